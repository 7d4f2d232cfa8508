"""A one-handler upstream, for answers ``FakeUpstream`` has no knob for (a body sent slowly, a
200 that is not JSON, a stream that goes silent).

``url = await tiny_upstream(handler)`` serves ``handler`` for ``POST /v1/chat/completions`` on
a free loopback port and returns the base URL (``http://127.0.0.1:PORT/v1``) for a tier.
tests/gateway/conftest.py registers the fixture. ``hold(request)`` keeps a handler silent
until the gateway hangs up; ``fixed_reply(body, type)`` answers 200 with ``body``;
``chunk_event(text)`` is one chat-completion chunk as SSE.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from tests.gateway.helpers import serve_app

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
StartTiny = Callable[[Handler], Awaitable[str]]


@pytest.fixture
async def tiny_upstream() -> AsyncIterator[StartTiny]:
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", handler)
        runner, origin = await serve_app(app)
        runners.append(runner)
        return f"{origin}/v1"

    yield start
    for runner in runners:
        await runner.cleanup()


def fixed_reply(body: bytes, content_type: str) -> Handler:
    """A handler that reads the request and answers 200 with ``body``, whatever was asked."""

    async def reply(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, content_type=content_type)

    return reply


async def hold(request: web.Request, *, at_most_s: float = 10.0) -> None:
    """Stay silent until the client (the gateway) closes the connection, or ``at_most_s``."""
    for _ in range(int(at_most_s / 0.05)):
        if request.transport is None or request.transport.is_closing():
            return
        await asyncio.sleep(0.05)


def chunk_event(text: str, *, role: bool = False) -> bytes:
    """One chat-completion chunk as an SSE event."""
    delta = {"role": "assistant", "content": text} if role else {"content": text}
    chunk = {
        "id": "chatcmpl-tiny",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    }
    return f"data: {json.dumps(chunk)}\n\n".encode()
