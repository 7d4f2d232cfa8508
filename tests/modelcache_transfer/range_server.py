"""A file server with HTTP ranges and injected faults, on 127.0.0.1, for the transfer tests.

Files are served under ``/m/<path>`` with ``HEAD`` and ranged ``GET``; ``/m/tiergate-manifest.json``
lists them (with their sha256). A fault applies to data ``GET`` s of its path (or of any path):
after letting ``skip`` matching requests through, to the next ``times`` ones (``None``: all).
``served`` counts body bytes written for data ``GET`` s, ``requests`` their ranges.
``head_status`` answers every ``HEAD`` with that status (a URL pre-signed for ``GET`` only);
``required_auth`` refuses requests without that ``Authorization`` (401). ``/m`` redirects to
``/m/`` and ``/listing`` is an HTML page, as a directory URL without its ``/`` meets them.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import orjson
from aiohttp import web

from tests.loopback import LoopbackServer

FaultKind = Literal["status", "drop", "stall", "corrupt", "short", "long", "ignore_range"]
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_PIECE = 64 << 10
_STALL_S = 30.0  # a stalled answer waits at most this long (its client gives up far sooner)


@dataclass
class Fault:
    """``status``: answer ``status`` (with ``retry_after``); ``drop``: send half the range and
    close the connection; ``stall``: send half and then nothing; ``corrupt``: flip one byte;
    ``short``/``long``: a body shorter/longer than the range, ``Content-Length`` honest;
    ``ignore_range``: 200 with the whole file."""

    kind: FaultKind
    path: str | None = None
    status: int = 500
    retry_after: str | None = None
    skip: int = 0
    times: int | None = 1


def random_bytes(n: int, seed: int) -> bytes:

    return random.Random(seed).randbytes(n)


class RangeServer(LoopbackServer):
    def __init__(
        self,
        files: dict[str, bytes],
        *,
        etags: dict[str, str] | None = None,
        linked_etags: dict[str, str] | None = None,
        manifest: bytes | None = None,
    ) -> None:
        self.files = files
        self.etags = etags or {}
        self.linked_etags = linked_etags or {}
        self.manifest = manifest
        self.faults: list[Fault] = []
        self.served = 0
        self.requests: list[tuple[str, int, int]] = []
        self.active = 0
        self.peak_active = 0
        self.head_status: int | None = None
        self.required_auth: str | None = None

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/m/{path}"

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._check_auth])
        app.router.add_route("HEAD", "/m/{path:.+}", self._head)
        app.router.add_get("/m/{path:.+}", self._get, allow_head=False)
        app.router.add_get("/m", self._to_directory)
        app.router.add_get("/listing", self._html)
        return app

    @web.middleware
    async def _check_auth(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        if self.required_auth and request.headers.get("Authorization") != self.required_auth:
            raise web.HTTPUnauthorized()
        return await handler(request)

    async def _to_directory(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently("/m/")

    async def _html(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="<html><a href='x.bin'>x.bin</a></html>", content_type="text/html")

    def manifest_body(self) -> bytes:
        if self.manifest is not None:
            return self.manifest
        files = [
            {"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            for path, data in self.files.items()
        ]
        return orjson.dumps({"version": 1, "files": files})

    def _take_fault(self, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.path not in (None, path):
                continue
            if fault.skip > 0:
                fault.skip -= 1
                return None
            if fault.times is not None:
                fault.times -= 1
                if fault.times == 0:
                    self.faults.remove(fault)
            return fault
        return None

    def _headers(self, path: str) -> dict[str, str]:
        headers = {"Accept-Ranges": "bytes"}
        if path in self.etags:
            headers["ETag"] = self.etags[path]
        if path in self.linked_etags:
            headers["X-Linked-Etag"] = self.linked_etags[path]
        return headers

    async def _head(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        if path not in self.files:
            raise web.HTTPNotFound()
        if self.head_status is not None:
            return web.Response(status=self.head_status)
        response = web.StreamResponse(headers=self._headers(path))
        response.content_length = len(self.files[path])
        await response.prepare(request)
        return response

    async def _get(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        if path == "tiergate-manifest.json" and path not in self.files:
            return web.Response(body=self.manifest_body(), content_type="application/json")
        data = self.files.get(path)
        if data is None:
            raise web.HTTPNotFound()
        start, end = _parse_range(request.headers.get("Range"), len(data))
        self.requests.append((path, start, end))
        fault = self._take_fault(path)
        kind = fault.kind if fault is not None else None
        if fault is not None and kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return web.Response(status=fault.status, headers=headers, text="injected")
        status, body, headers = 206, data[start:end], self._headers(path)
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        if kind == "ignore_range":
            status, body = 200, data
            del headers["Content-Range"]
        elif kind == "corrupt":
            middle = len(body) // 2
            body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :]
        elif kind == "short":
            body = body[: len(body) // 2]
        elif kind == "long":
            body = body + b"surplus bytes"
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = len(body)
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)
        try:
            await response.prepare(request)
            if kind in ("drop", "stall"):
                await self._send(response, body[: len(body) // 2])
                if kind == "stall":
                    await asyncio.sleep(_STALL_S)
                assert request.transport is not None
                request.transport.close()
                return response
            await self._send(response, body)
            await response.write_eof()
            return response
        finally:
            self.active -= 1

    async def _send(self, response: web.StreamResponse, body: bytes) -> None:
        for offset in range(0, len(body), _PIECE):
            piece = body[offset : offset + _PIECE]
            await response.write(piece)
            self.served += len(piece)


def _parse_range(header: str | None, size: int) -> tuple[int, int]:
    if header is None:
        return 0, size
    first, _, last = header.removeprefix("bytes=").partition("-")
    return int(first), min(int(last) + 1, size)
