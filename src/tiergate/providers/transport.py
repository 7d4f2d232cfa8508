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
    while True:
        timer = asyncio.timeout(idle_s)
        try:
            async with timer:
                received = await content.readany()
        except (aiohttp.ClientError, TimeoutError) as exc:
            if timer.expired():
                raise UpstreamTimeoutError(tier, f"no data for {idle_s:g} s", "idle") from exc
            translate(tier, exc)  # the session's own limits, or a broken connection
        if not received:
            return
        yield received


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
