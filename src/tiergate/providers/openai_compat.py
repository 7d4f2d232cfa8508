"""The ``openai-compatible`` provider: vLLM, SGLang, llm-d, OpenAI and anything speaking its API.

One pooled keep-alive session per upstream. Request bodies are forwarded as given (unknown
fields included) apart from what the gateway rewrote; responses are relayed as bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import orjson

from tiergate.errors import UpstreamError
from tiergate.providers.base import Endpoint, UpstreamReply, UpstreamRequest, UpstreamStream
from tiergate.providers.transport import body_chunks, pooled_session, post, read_reply
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
        self._session: aiohttp.ClientSession | None = None

    def supports(self, endpoint: Endpoint) -> bool:
        return True

    async def _post(self, request: UpstreamRequest) -> aiohttp.ClientResponse:
        if self._session is None:  # created on first use, inside the loop that drives it
            self._session = pooled_session(self._timeouts, decompress=False)
        return await post(
            self._session,
            self._base + request.endpoint,
            orjson.dumps(request.body),
            {**self._headers, "x-request-id": request.request_id},
            tier=self.name,
            timeouts=self._timeouts,
            first_byte_s=request.first_byte_s,
        )

    async def send(self, request: UpstreamRequest) -> UpstreamReply:
        return await read_reply(self.name, await self._post(request))

    async def stream(self, request: UpstreamRequest) -> UpstreamReply | UpstreamStream:
        response = await self._post(request)
        if response.status != 200 or response.content_type != "text/event-stream":
            # Not a stream (an error, or a server ignoring ``stream``): the cascade judges it.
            return await read_reply(self.name, response)
        return _SSEStream(self.name, response, self._timeouts.idle_s)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _SSEStream:
    """Splits an upstream SSE body into whole events as bytes arrive."""

    def __init__(self, tier: str, response: aiohttp.ClientResponse, idle_s: float) -> None:
        self._tier = tier
        self._response = response
        self._idle_s = idle_s
        self._finished = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events()

    async def _events(self) -> AsyncIterator[bytes]:
        pending = b""
        try:
            async for received in body_chunks(self._tier, self._response, self._idle_s):
                chunk = pending + received if pending else received
                if chunk.endswith(_EVENT_END) and chunk.count(_EVENT_END) == 1:
                    pending = b""
                    yield chunk  # the common case: one whole event per read
                    continue
                *events, pending = chunk.split(_EVENT_END)
                for event in events:
                    if event:
                        yield event + _EVENT_END
        except UpstreamError:
            self._response.close()
            raise
        if pending.strip():
            yield pending + _EVENT_END
        self._finished = True
        self._response.release()

    async def aclose(self) -> None:
        if not self._finished:
            # Closing (not releasing) drops the connection: the upstream sees the request end.
            self._response.close()
