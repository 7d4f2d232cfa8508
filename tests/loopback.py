"""The lifecycle every fake server of the tests shares: a real aiohttp app on 127.0.0.1.

A subclass builds its application in ``make_app``; ``start`` serves it on ``self.port`` (0: a
free port, read back after start), ``close`` stops it; both also work as ``async with``.
Handlers are cancelled when their client goes away, so that a stall or a stream notices at once.
"""

from __future__ import annotations

import ssl
from typing import Self

from aiohttp import web


class LoopbackServer:
    port: int = 0
    ssl_context: ssl.SSLContext | None = None  # set before start: serve HTTPS
    _runner: web.AppRunner | None = None

    def make_app(self) -> web.Application:
        raise NotImplementedError

    async def start(self) -> Self:
        self._runner = web.AppRunner(self.make_app(), handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.ssl_context)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
