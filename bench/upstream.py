"""Zero-delay OpenAI-compatible upstream for the gateway benchmark.

Answers at once, with bodies built once at start-up:

- ``POST /v1/chat/completions``: a fixed ``chat.completion`` with ``usage``; with
  ``"stream": true``, an SSE stream of 20 ``chat.completion.chunk`` events (one write each),
  then a usage chunk when ``stream_options.include_usage`` is true, then ``data: [DONE]``.
- ``GET /health``: 200. ``GET /v1/models``: the one model.

Run: ``.venv/bin/python bench/upstream.py --port 18000`` (binds 127.0.0.1 by default).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from typing import Any

import orjson
import uvloop
from aiohttp import web

MODEL = "bench-model"
REPLY = "Hello from the zero-delay bench upstream."
STREAM_CHUNKS = 20
CHUNK_TEXTS = tuple(f"tok{i:02d} " for i in range(STREAM_CHUNKS))
STREAM_TEXT = "".join(CHUNK_TEXTS)
PROMPT_TOKENS = 9
CREATED = int(time.time())
COMPLETION_ID = "chatcmpl-bench-0001"


def _usage(completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": completion_tokens,
        "total_tokens": PROMPT_TOKENS + completion_tokens,
    }


def _completion() -> bytes:
    return orjson.dumps(
        {
            "id": COMPLETION_ID,
            "object": "chat.completion",
            "created": CREATED,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": REPLY},
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(8),
        }
    )


def _chunk(delta: dict[str, str], finish: str | None) -> dict[str, Any]:
    return {
        "id": COMPLETION_ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _stream_events() -> tuple[bytes, ...]:
    last = STREAM_CHUNKS - 1
    return tuple(
        _event(
            _chunk(
                {"role": "assistant", "content": text} if i == 0 else {"content": text},
                "stop" if i == last else None,
            )
        )
        for i, text in enumerate(CHUNK_TEXTS)
    )


def _usage_event() -> bytes:
    payload = _chunk({}, None)
    payload["choices"] = []
    payload["usage"] = _usage(STREAM_CHUNKS)
    return _event(payload)


COMPLETION_BODY = _completion()
STREAM_EVENTS = _stream_events()
USAGE_EVENT = _usage_event()
DONE_EVENT = b"data: [DONE]\n\n"
MODELS_BODY = orjson.dumps(
    {"object": "list", "data": [{"id": MODEL, "object": "model", "created": CREATED}]}
)


def _wants_usage(payload: dict[str, Any]) -> bool:
    options = payload.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


async def _stream(request: web.Request, include_usage: bool) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    try:
        await response.prepare(request)
        for event in STREAM_EVENTS:
            await response.write(event)
        if include_usage:
            await response.write(USAGE_EVENT)
        await response.write(DONE_EVENT)
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client left mid-stream (wrk stops at the end of a run): nothing to do
    return response


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """Answer a chat completion at once, streamed when asked."""
    try:
        payload = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        payload = None
    if not isinstance(payload, dict):
        error = {"error": {"message": "body must be a JSON object", "type": "invalid_request"}}
        return web.Response(status=400, body=orjson.dumps(error), content_type="application/json")
    if payload.get("stream") is True:
        return await _stream(request, _wants_usage(payload))
    return web.Response(body=COMPLETION_BODY, content_type="application/json")


async def health(_request: web.Request) -> web.Response:
    """Liveness."""
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


async def models(_request: web.Request) -> web.Response:
    """The one model this upstream serves."""
    return web.Response(body=MODELS_BODY, content_type="application/json")


def make_app() -> web.Application:
    """The upstream's routes."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    return app


async def serve(host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    runner = web.AppRunner(make_app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096, reuse_address=True)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
