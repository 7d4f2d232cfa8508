"""The HTTP client side every provider shares: pooled sessions, time limits, error translation.

aiohttp's transport errors become :class:`tiergate.errors.UpstreamError` subclasses here and
nowhere else.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import NoReturn

import aiohttp
from yarl import URL

from tiergate.errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamResetError,
    UpstreamTimeoutError,
)
from tiergate.providers.base import UpstreamReply
from tiergate.spec import Timeouts


def pooled_session(timeouts: Timeouts, *, decompress: bool) -> aiohttp.ClientSession:
    """A keep-alive session for one upstream; create it inside the loop that will drive it."""
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60, ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeouts.total_s, sock_connect=timeouts.connect_s),
        auto_decompress=decompress,
    )


async def post(
    session: aiohttp.ClientSession,
    url: str | URL,
    data: bytes,
    headers: dict[str, str],
    *,
    tier: str,
    timeouts: Timeouts,
    first_byte_s: float | None = None,
) -> aiohttp.ClientResponse:
    """POST and wait for the response headers within the tier's first-byte limit, or within
    ``first_byte_s`` (the cascade's limit for this attempt) when that is sooner."""
    limit = (
        timeouts.first_byte_s if first_byte_s is None else min(first_byte_s, timeouts.first_byte_s)
    )
    try:
        if limit >= timeouts.total_s:
            # The session's total limit covers it: save a timer per request.
            return await session.post(url, data=data, headers=headers)
        async with asyncio.timeout(limit):
            return await session.post(url, data=data, headers=headers)
    except TimeoutError as exc:
        raise UpstreamTimeoutError(tier, f"no response within {limit:g} s", "first_byte") from exc
    except aiohttp.ClientError as exc:
        translate(tier, exc)


async def body_chunks(
    tier: str, response: aiohttp.ClientResponse, idle_s: float
) -> AsyncIterator[bytes]:
    """The response body's bytes as they arrive; an upstream silent for ``idle_s`` between two
    reads raises :class:`UpstreamTimeoutError` (phase ``idle``), a broken one its translation.

    The session's total limit still bounds the whole body: this one catches a stalled stream
    long before it, without cutting a long one that keeps sending.
    """
    content = response.content
    watch = _IdleWatch(idle_s)
    try:
        while True:
            try:
                received = await watch.read(content)
            except (aiohttp.ClientError, TimeoutError) as exc:
                if watch.expired:
                    raise UpstreamTimeoutError(tier, f"no data for {idle_s:g} s", "idle") from exc
                translate(tier, exc)  # the session's own limits, or a broken connection
            if not received:
                return
            yield received
    finally:
        watch.close()


class _IdleWatch:
    """Ends a read that has waited ``idle_s``, with one timer per ``idle_s`` rather than one
    per read: a stream's reads are many and short, and a timer each cost more than the relay.

    The timer, when it fires, ends the read in progress if it started ``idle_s`` ago, or
    re-arms itself for when it would; between reads it lapses, and the next read arms it.
    """

    def __init__(self, idle_s: float) -> None:
        self._idle_s = idle_s
        self._loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None, "reads run in a task"
        self._task = task
        self._since: float | None = None  # when the read in progress started
        self._timer: asyncio.TimerHandle | None = None
        self.expired = False

    async def read(self, content: aiohttp.StreamReader) -> bytes:
        """``content.readany()``; :class:`TimeoutError` when it waited ``idle_s``."""
        self._since = self._loop.time()
        if self._timer is None:
            self._timer = self._loop.call_at(self._since + self._idle_s, self._check)
        try:
            return await content.readany()
        except asyncio.CancelledError:
            # Ours (expired), unless someone else cancelled the task too: theirs goes on.
            if self.expired and self._task.uncancel() == 0:
                raise TimeoutError from None
            raise
        finally:
            self._since = None

    def _check(self) -> None:
        self._timer = None
        if self._since is None:
            return
        due = self._since + self._idle_s
        if self._loop.time() >= due:
            self.expired = True
            self._task.cancel()
        else:
            self._timer = self._loop.call_at(due, self._check)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


async def read_body(tier: str, response: aiohttp.ClientResponse) -> bytes:
    """The whole response body; the connection goes back to the pool."""
    try:
        body = await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        response.close()
        translate(tier, exc)
    response.release()
    return body


async def read_reply(tier: str, response: aiohttp.ClientResponse) -> UpstreamReply:
    """The response as a complete reply, relayed as it came."""
    body = await read_body(tier, response)
    return UpstreamReply(response.status, body, response.content_type)


def translate(tier: str, exc: BaseException) -> NoReturn:
    """Map aiohttp's transport errors to tiergate's upstream errors: the one place it happens."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        raise UpstreamTimeoutError(tier, "connect timed out", "connect") from exc
    if isinstance(exc, TimeoutError):
        raise UpstreamTimeoutError(tier, "total time limit reached", "total") from exc
    if isinstance(exc, aiohttp.ClientConnectorError):
        raise UpstreamConnectError(tier, f"cannot connect: {exc.os_error}") from exc
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        raise UpstreamResetError(tier, f"connection closed: {exc}") from exc
    if isinstance(exc, aiohttp.ClientOSError):
        raise UpstreamResetError(tier, f"connection error: {exc}") from exc
    raise UpstreamError(tier, f"{type(exc).__name__}: {exc}") from exc
