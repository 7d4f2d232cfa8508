"""Relaying a committed SSE stream to the client, chunk by chunk, as it arrives.

After the commit point nothing can move to another tier: an upstream failure ends the client's
stream with an explicit OpenAI-style error event, never a silent truncation. Usage is always
captured from the upstream's usage chunk, which is stripped when the client did not ask for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tiergate.errors import UpstreamError
from tiergate.gateway.dispatch import Served
from tiergate.gateway.openai_errors import OpenAIError

_DONE = b"data: [DONE]"


@dataclass(slots=True)
class StreamResult:
    """What the relay saw: the usage reported, and whether the stream ended cleanly."""

    usage: dict[str, Any] | None = None
    failure: str | None = None


async def relay_stream(
    request: web.Request,
    served: Served,
    headers: dict[str, str],
    include_usage: bool,
    result: StreamResult,
) -> web.StreamResponse:
    """Send the served stream to the client; fill ``result`` as it goes."""
    assert served.stream is not None
    assert served.events is not None
    response = web.StreamResponse(
        status=200,
        headers={
            **headers,
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        },
    )
    try:
        await response.prepare(request)
        try:
            done = await _pump(response, served, include_usage, result)
        except UpstreamError as exc:
            result.failure = exc.reason
            message = f"Upstream tier '{served.tier}' failed mid-stream: {exc.detail}"
            await _write_error(response, message)
        else:
            if not done:
                result.failure = "truncated"
                message = f"Upstream tier '{served.tier}' ended the stream without [DONE]."
                await _write_error(response, message)
        await response.write_eof()
    except ConnectionResetError:
        # The client went away: nothing left to tell it, and not the tier's fault (no failure
        # is recorded); the finally releases the upstream.
        pass
    finally:
        await served.stream.aclose()
    return response


async def _pump(
    response: web.StreamResponse, served: Served, include_usage: bool, result: StreamResult
) -> bool:
    """Relay events until ``[DONE]`` (True) or the upstream's end without it (False)."""
    assert served.events is not None
    event = served.first_event
    while True:
        if b'"usage"' in event:
            usage, only_usage = _usage(event)
            if usage is not None:
                result.usage = usage
            if only_usage and not include_usage:
                event = b""
        done = event.startswith(_DONE)
        if event:
            await response.write(event)
        if done:
            return True
        try:
            event = await anext(served.events)
        except StopAsyncIteration:
            return False


async def _write_error(response: web.StreamResponse, message: str) -> None:
    error = OpenAIError(502, message, type_="upstream_error", code="stream_interrupted")
    await response.write(error.sse_event())


def _usage(event: bytes) -> tuple[dict[str, Any] | None, bool]:
    """The usage object of an event, and whether the event is only a usage chunk."""
    if b'"usage":null' in event or b'"usage": null' in event or not event.startswith(b"data: {"):
        return None, False
    try:
        data = orjson.loads(event[6:])
    except orjson.JSONDecodeError:
        return None, False
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return None, False
    return usage, not data.get("choices")
