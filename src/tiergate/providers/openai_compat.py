"""The ``openai-compatible`` provider: vLLM, SGLang, llm-d, OpenAI and anything speaking its API.

One pooled keep-alive session per upstream. Request bodies are forwarded as given (unknown
fields included) apart from what the gateway rewrote; responses are relayed as bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import NoReturn

import aiohttp
import orjson

from tiergate.errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamResetError,
    UpstreamTimeoutError,
)
from tiergate.providers.base import Endpoint, UpstreamReply, UpstreamRequest, UpstreamStream
from tiergate.spec import Tier

_EVENT_END = b"\n\n"


class OpenAICompatProvider:
    """An upstream speaking the OpenAI HTTP API under ``tier.base_url``."""

    def __init__(self, tier: Tier) -> None:
        if tier.base_url is None:
            raise ValueError(f"tier {tier.name} has no baseUrl")
        self.name = tier.name
        self._base = tier.base_url.rstrip("/")
        self._timeouts = tier.timeouts
        self._headers = {"Content-Type": "application/json"}
        if tier.api_key:
            self._headers["Authorization"] = f"Bearer {tier.api_key}"
        self._timeout = aiohttp.ClientTimeout(
            total=tier.timeouts.total_s, sock_connect=tier.timeouts.connect_s
        )
        self._session: aiohttp.ClientSession | None = None

    def supports(self, endpoint: Endpoint) -> bool:
        return True

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running event loop that will drive it.
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, auto_decompress=False
            )
        return self._session

    async def _post(self, request: UpstreamRequest) -> aiohttp.ClientResponse:
        headers = {**self._headers, "x-request-id": request.request_id}
        data = orjson.dumps(request.body)
        url = self._base + request.endpoint
        try:
            if self._timeouts.first_byte_s >= self._timeouts.total_s:
                # The session's total limit covers it: save a timer per request.
                return await self._client().post(url, data=data, headers=headers)
            async with asyncio.timeout(self._timeouts.first_byte_s):
                return await self._client().post(url, data=data, headers=headers)
        except TimeoutError as exc:
            raise UpstreamTimeoutError(
                self.name, f"no response within {self._timeouts.first_byte_s:g} s", "first_byte"
            ) from exc
        except aiohttp.ClientError as exc:
            _translate(self.name, exc)

    async def send(self, request: UpstreamRequest) -> UpstreamReply:
        return await self._reply(await self._post(request))

    async def stream(self, request: UpstreamRequest) -> UpstreamReply | UpstreamStream:
        response = await self._post(request)
        if response.status != 200:
            return await self._reply(response)
        return _SSEStream(self.name, response)

    async def _reply(self, response: aiohttp.ClientResponse) -> UpstreamReply:
        try:
            body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            response.close()
            _translate(self.name, exc)
        response.release()
        return UpstreamReply(response.status, body, response.content_type)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _SSEStream:
    """Splits an upstream SSE body into whole events as bytes arrive."""

    def __init__(self, tier: str, response: aiohttp.ClientResponse) -> None:
        self._tier = tier
        self._response = response
        self._finished = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events()

    async def _events(self) -> AsyncIterator[bytes]:
        pending = b""
        try:
            async for received in self._response.content.iter_any():
                chunk = pending + received if pending else received
                if chunk.endswith(_EVENT_END) and chunk.count(_EVENT_END) == 1:
                    pending = b""
                    yield chunk  # the common case: one whole event per read
                    continue
                *events, pending = chunk.split(_EVENT_END)
                for event in events:
                    if event:
                        yield event + _EVENT_END
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._response.close()
            _translate(self._tier, exc)
        if pending.strip():
            yield pending + _EVENT_END
        self._finished = True
        self._response.release()

    async def aclose(self) -> None:
        if not self._finished:
            # Closing (not releasing) drops the connection: the upstream sees the request end.
            self._response.close()


def _translate(tier: str, exc: BaseException) -> NoReturn:
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
