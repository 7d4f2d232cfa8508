"""HTTP API of one replica: vLLM's OpenAI-compatible endpoints, health, metrics and admin.

- ``POST /v1/chat/completions``, ``POST /v1/completions``: streaming (SSE) or not; the
  ``prompt_tokens`` and ``output_tokens`` body fields (or ``x-emulator-prompt-tokens`` and
  ``x-emulator-output-tokens`` headers) set token counts (see ``openai_format``).
- ``GET /v1/models``, ``GET /health`` (503 while loading), ``GET /metrics``.
- ``GET/POST /admin/faults`` (JSON: read, or change some of the faults), ``POST /admin/heal``
  (clear them all), ``POST /admin/crash`` (JSON, optional: ``restart_after_s``, and ``cold``,
  default true, for the cold start of the restart).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tiergate.emulator.config import DEFAULT_MAX_TOKENS
from tiergate.emulator.faults import Faults
from tiergate.emulator.openai_format import DONE, Answer, ChatBody, CompletionBody
from tiergate.emulator.scheduler import State

if TYPE_CHECKING:
    from tiergate.emulator.engine import RequestHandle
    from tiergate.emulator.replica import Replica

REPLICA: web.AppKey[Replica] = web.AppKey("replica")
PROMPT_TOKENS_HEADER = "x-emulator-prompt-tokens"
OUTPUT_TOKENS_HEADER = "x-emulator-output-tokens"
_ERROR_TYPES = {400: "BadRequestError", 404: "NotFoundError", 429: "RateLimitError"}


class _Crash(BaseModel):
    model_config = ConfigDict(extra="forbid")

    restart_after_s: float | None = Field(None, ge=0)
    cold: bool = True


class _ApiError(Exception):
    """A request answered with an OpenAI error, in vLLM's shape."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    def response(self) -> web.Response:
        error_type = _ERROR_TYPES.get(self.status, "InternalServerError")
        body = {
            "error": {"message": str(self), "type": error_type, "param": None, "code": self.status}
        }
        return web.json_response(body, status=self.status, dumps=_dumps)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def create_app(replica: Replica) -> web.Application:
    """The aiohttp application of ``replica``."""
    app = web.Application()
    app[REPLICA] = replica
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_post("/v1/completions", _completions)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/admin/faults", _get_faults)
    app.router.add_post("/admin/faults", _set_faults)
    app.router.add_post("/admin/heal", _heal)
    app.router.add_post("/admin/crash", _crash)
    return app


async def _chat(request: web.Request) -> web.StreamResponse:
    return await _generate(request, chat=True)


async def _completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, chat=False)


async def _generate(request: web.Request, *, chat: bool) -> web.StreamResponse:
    replica = request.app[REPLICA]
    faults = replica.faults  # as they were when the request came: a change affects later ones
    try:
        if not replica.ready:
            raise _ApiError(503, "The model is loading; the server is not ready.")
        if faults.added_latency_ms:
            await asyncio.sleep(faults.added_latency_ms / 1000)
        if faults.error_rate and replica.rng.random() < faults.error_rate:
            raise _ApiError(faults.error_status, "Injected fault.")
        body, prompt_tokens, max_tokens = _parse(request, await request.read(), chat=chat)
        output_tokens, reason = replica.output_length(
            max_tokens,
            body.ignore_eos,
            _header_int(request, OUTPUT_TOKENS_HEADER) or body.output_tokens,
        )
        engine = replica.engine
        handle = engine.submit(prompt_tokens, output_tokens, reason, streaming=body.stream)
        answer = Answer(_request_id(chat, handle), replica.name, int(time.time()), chat=chat)
        try:
            if body.stream:
                return await _stream(request, handle, answer, faults, body.include_usage)
            return await _reply(request, handle, answer, faults)
        finally:
            engine.abort(handle)  # a no-op once it finished; else its client went away
    except _ApiError as refused:
        return refused.response()


def _parse(
    request: web.Request, raw: bytes, *, chat: bool
) -> tuple[ChatBody | CompletionBody, int, int]:
    """The body, prompt tokens and max_tokens of a generation request, or a 400/404."""
    replica = request.app[REPLICA]
    try:
        body: ChatBody | CompletionBody = (
            ChatBody if chat else CompletionBody
        ).model_validate_json(raw)
        prompt_tokens = (
            _header_int(request, PROMPT_TOKENS_HEADER)
            or body.prompt_tokens
            or body.estimated_prompt_tokens()
        )
    except (ValidationError, ValueError) as exc:
        raise _ApiError(400, _first_error(exc)) from None
    if body.model != replica.name:
        raise _ApiError(404, f"The model `{body.model}` does not exist.")
    max_tokens = body.requested_max_tokens() or DEFAULT_MAX_TOKENS
    if prompt_tokens + max_tokens > replica.max_model_len:
        raise _ApiError(
            400,
            f"This model's maximum context length is {replica.max_model_len} tokens. However, "
            f"you requested {prompt_tokens + max_tokens} tokens ({prompt_tokens} in the "
            f"messages, {max_tokens} in the completion). Please reduce the length of the "
            "messages or completion.",
        )
    return body, prompt_tokens, max_tokens


async def _reply(
    request: web.Request, handle: RequestHandle, answer: Answer, faults: Faults
) -> web.StreamResponse:
    engine_request = handle.request
    while not engine_request.finished:
        await handle.wait()
    if engine_request.state is State.ABORTED:
        raise _ApiError(503, "The engine stopped.")
    tokens = engine_request.num_output
    if faults.reset_after_tokens is not None and tokens > faults.reset_after_tokens:
        return await reset_connection(request)
    if faults.stall_after_tokens is not None and tokens > faults.stall_after_tokens:
        await asyncio.get_running_loop().create_future()  # until the client goes away
    body = answer.body(tokens, engine_request.finish_reason, engine_request.prompt_tokens)
    return web.Response(body=body, content_type="application/json")


async def _stream(
    request: web.Request,
    handle: RequestHandle,
    answer: Answer,
    faults: Faults,
    include_usage: bool,
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    engine_request = handle.request
    reset, stall = faults.reset_after_tokens, faults.stall_after_tokens
    limit = min((n for n in (reset, stall) if n is not None), default=None)
    # As vLLM does, the role chunk goes out with the first token, after prefill: a gateway
    # measuring time to first byte must see the prefill, not an early empty chunk.
    role = answer.role_chunk()
    sent = 0
    while True:
        produced = engine_request.num_output
        if limit is not None:
            produced = min(produced, limit)
        if role and (produced > sent or (limit is not None and sent >= limit)):
            await response.write(role)
            role = b""
        if produced > sent:
            await response.write(answer.token_chunks(sent, produced))
            sent = produced
        if reset is not None and sent >= reset:
            return await reset_connection(request)
        if stall is not None and sent >= stall:
            await asyncio.get_running_loop().create_future()  # until the client goes away
        if engine_request.finished:
            break
        await handle.wait()
    if engine_request.state is State.ABORTED:
        return await reset_connection(request)  # the engine stopped: end the stream as a failure
    tail = [answer.finish_chunk(engine_request.finish_reason)]
    if include_usage:
        tail.append(answer.usage_chunk(engine_request.prompt_tokens, sent))
    tail.append(DONE)
    await response.write(b"".join(tail))
    await response.write_eof()
    return response


async def reset_connection(request: web.Request) -> web.StreamResponse:
    """Drop the connection with a TCP reset, mid-answer (also used by test fakes)."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER 0: closing sends RST instead of FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    # The connection is gone; aiohttp cancels this handler (handler_cancellation) meanwhile.
    await asyncio.sleep(1)
    return web.Response(status=599)


def _header_int(request: web.Request, name: str) -> int | None:
    value = request.headers.get(name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise _ApiError(400, f"header {name} must be an integer, got {value!r}") from None
    if number < 1:
        raise _ApiError(400, f"header {name} must be at least 1, got {number}")
    return number


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "body"
        return f"{where}: {error['msg']}"
    return str(exc)


def _request_id(chat: bool, handle: RequestHandle) -> str:
    prefix = "chatcmpl" if chat else "cmpl"
    return f"{prefix}-{handle.request.request_id:016x}"


async def _models(request: web.Request) -> web.Response:
    replica = request.app[REPLICA]
    model = {
        "id": replica.name,
        "object": "model",
        "created": 0,
        "owned_by": "vllm",
        "root": replica.config.model,
        "parent": None,
        "max_model_len": replica.max_model_len,
    }
    return web.json_response({"object": "list", "data": [model]}, dumps=_dumps)


async def _health(request: web.Request) -> web.Response:
    replica = request.app[REPLICA]
    if not replica.ready:
        return web.Response(status=503)
    return web.Response(status=replica.faults.health_status)


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[REPLICA].engine.metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[REPLICA].faults.model_dump(), dumps=_dumps)


async def _set_faults(request: web.Request) -> web.Response:
    replica = request.app[REPLICA]
    try:
        changes = orjson.loads(await request.read() or b"{}")
        if not isinstance(changes, dict):
            raise ValueError("the body must be a JSON object")
        replica.faults = replica.faults.updated(changes)
    except (ValidationError, ValueError) as exc:  # orjson.JSONDecodeError is a ValueError
        return _ApiError(400, _first_error(exc)).response()
    return web.json_response(replica.faults.model_dump(), dumps=_dumps)


async def _heal(request: web.Request) -> web.Response:
    replica = request.app[REPLICA]
    replica.faults = Faults()
    return web.json_response(replica.faults.model_dump(), dumps=_dumps)


async def _crash(request: web.Request) -> web.StreamResponse:
    replica = request.app[REPLICA]
    try:
        order = _Crash.model_validate_json(await request.read() or b"{}")
    except ValidationError as exc:
        return _ApiError(400, _first_error(exc)).response()
    # Answer first, then crash: the caller learns the order was taken, then the replica drops
    # every connection (this one included).
    response = web.json_response({"crashing": True, **order.model_dump()}, dumps=_dumps)
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    replica.spawn(replica.crash(order.restart_after_s, cold=order.cold))
    return response
