"""Relaying a committed SSE stream to the client, chunk by chunk, as it arrives.

After the commit point nothing can move to another tier: an upstream failure ends the client's
stream with an explicit OpenAI-style error event, never a silent truncation. Usage is always
captured from the upstream's usage chunk, which is stripped when the client did not ask for it.

A stream that ends before that chunk (the client went away, the upstream broke or went silent)
is billed for what was relayed: one completion token per event that carried output (engines
send one event per decoding step, so this is a lower bound) and the prompt estimated from its
size, as the rate limiter does.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tiergate.errors import UpstreamError
from tiergate.gateway.dispatch import Served
from tiergate.gateway.openai_errors import OpenAIError
from tiergate.providers import Usage

_DONE = b"data: [DONE]"
# An event that carries generated output: non-empty text, content or reasoning, or a tool call.
_OUTPUT = re.compile(
    rb'"(?:content|text|reasoning_content|reasoning)":\s*"[^"]|"tool_calls":\s*\[\{'
)
# Bytes of prompt per token when estimating (the rate limiter's estimate too).
BYTES_PER_TOKEN = 4


@dataclass(slots=True)
class StreamResult:
    """What the relay saw: the usage reported, whether the stream ended cleanly, whether the
    client went away, and how many events carried generated output."""

    usage: dict[str, Any] | None = None
    failure: str | None = None
    client_closed: bool = False
    output_events: int = 0

    def billed_usage(self, body: dict[str, Any]) -> Usage | None:
        """The usage to bill: the upstream's when the stream ended with it, else what was
        relayed (the prompt estimated from the size of ``body``'s messages or prompt)."""
        reported = Usage.from_openai(self.usage)
        if self.output_events == 0:
            return reported
        ended = self.failure is None and not self.client_closed
        if reported is not None and (ended or reported.completion >= self.output_events):
            return reported
        # No usage chunk, or only a running count (continuous usage) that fell behind.
        size = len(orjson.dumps(body.get("messages") or body.get("prompt") or ""))
        prompt = max(size // BYTES_PER_TOKEN, 1, reported.prompt if reported else 0)
        return Usage(prompt, self.output_events)


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
        result.client_closed = True
    except asyncio.CancelledError:
        # The same, noticed by aiohttp first (handler_cancellation) or a shutdown's deadline.
        result.client_closed = True
        raise
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
            if _OUTPUT.search(event):
                result.output_events += 1
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
