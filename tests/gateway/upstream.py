"""A fault-injecting fake of an OpenAI-compatible engine (vLLM's API), for gateway tests.

``FakeUpstream`` is a real aiohttp server on ``127.0.0.1`` with a free port. It answers
``POST /v1/chat/completions``, ``/v1/completions`` and ``/v1/embeddings``, ``GET /v1/models``,
``GET /health`` and ``GET /metrics`` the way vLLM does, and every answer names the upstream
(``"from a"``) so that a test can tell which tier served.

Behaviour knobs are plain attributes, read when a request arrives, so a test can change them at
any time (``up.status = 503``) or several at once (``up.set(status=None, stall_s=0.5)``):

- ``status`` (None): answer with this HTTP status and an OpenAI error body (``error_body``)
- ``reset_before_first_byte`` (False): drop the connection (TCP reset) without any response
- ``reset_after_chunks`` (None): stream this many SSE events (the role chunk counts), then
  drop the connection mid-body; 0 drops it right after the headers
- ``stall_s`` (0): sleep before the status line and headers
- ``chunks`` (5): content chunks in a stream (``"from a #0; "``, ...) and completion tokens
- ``chunk_delay_s`` (0): sleep before each content chunk
- ``health_status`` (200) and ``health_delay_s`` (0): ``GET /health``
- ``waiting`` and ``kv_usage`` (0): ``vllm:num_requests_waiting`` and
  ``vllm:kv_cache_usage_perc`` in ``/metrics``

``heal()`` puts every knob back to its default. Embeddings are 3-float vectors (base64 when the
request asks, as the openai client does by default).

Usage is always ``prompt_tokens=7``, ``completion_tokens=chunks``.

What it saw: ``requests`` (``RecordedRequest(path, headers, body)`` per POST, in arrival
order), ``health_probes`` and ``metrics_scrapes`` (counts), ``active_requests`` (POSTs being
handled now), ``active_streams`` (SSE responses being written now), ``completed_streams``,
``cancelled_streams`` (streams whose client went away before the end) and ``cancelled_requests``
(non-streaming requests whose client went away before the answer).
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time
from typing import Any, NamedTuple

from aiohttp import web

from tests.loopback import LoopbackServer
from tiergate.emulator.routes import reset_connection

_DEFAULT_KNOBS: dict[str, Any] = {
    "status": None,
    "reset_before_first_byte": False,
    "reset_after_chunks": None,
    "stall_s": 0.0,
    "chunks": 5,
    "chunk_delay_s": 0.0,
    "health_status": 200,
    "health_delay_s": 0.0,
    "waiting": 0.0,
    "kv_usage": 0.0,
}

PROMPT_TOKENS = 7
# Marks on a request: the fake dropped the connection itself / the answer is a stream.
_DROPPED = web.RequestKey("dropped", bool)
_STREAMING = web.RequestKey("streaming", bool)
_ERROR_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    404: "NotFoundError",
    413: "RequestTooLarge",
    422: "UnprocessableEntity",
    429: "RateLimitError",
}


class RecordedRequest(NamedTuple):
    """One POST the upstream received."""

    path: str
    headers: dict[str, str]  # names in lower case
    body: Any


class FakeUpstream(LoopbackServer):
    """An in-process OpenAI-compatible engine whose faults a test switches on and off."""

    def __init__(self, name: str = "a", *, models: tuple[str, ...] = ("fake-model",)) -> None:
        self.name = name
        self.models = models
        self.status: int | None = None
        self.reset_before_first_byte = False
        self.reset_after_chunks: int | None = None
        self.stall_s = 0.0
        self.chunks = 5
        self.chunk_delay_s = 0.0
        self.health_status = 200
        self.health_delay_s = 0.0
        self.waiting = 0.0
        self.kv_usage = 0.0
        self.requests: list[RecordedRequest] = []
        self.health_probes = 0
        self.metrics_scrapes = 0
        self.active_requests = 0
        self.active_streams = 0
        self.completed_streams = 0
        self.cancelled_streams = 0
        self.cancelled_requests = 0

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT``: where ``/health`` and ``/metrics`` live."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The OpenAI API root, ``http://127.0.0.1:PORT/v1``: a tier's ``baseUrl``."""
        return f"{self.origin}/v1"

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        return app

    def set(self, **knobs: Any) -> None:
        """Set several knobs at once; an unknown name is an error (typos fail loudly)."""
        for key, value in knobs.items():
            if key not in _DEFAULT_KNOBS:
                raise AttributeError(f"unknown FakeUpstream knob {key!r}")
            setattr(self, key, value)

    def heal(self) -> None:
        """Reset every knob to its default: a healthy, fast upstream."""
        self.set(**_DEFAULT_KNOBS)

    def error_body(self, status: int) -> dict[str, Any]:
        """The JSON body this upstream answers with when ``status`` is injected."""
        return _error_body(status, f"injected status {status} by {self.name}")

    def posts(self, path: str | None = None) -> list[RecordedRequest]:
        """The recorded POSTs, optionally only those to ``path`` (``/v1/chat/completions``)."""
        return [r for r in self.requests if path is None or r.path == path]

    # -- endpoints ---------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        self.active_requests += 1
        try:
            early = await self._faults(request)
            if early is not None:
                return early
            inputs = body.get("input") if isinstance(body, dict) else None
            items = inputs if isinstance(inputs, list) and inputs else [inputs]
            base64_format = isinstance(body, dict) and body.get("encoding_format") == "base64"
            data = []
            for index in range(len(items)):
                vector = [float(len(self.name)), 0.5, float(index)]
                embedding: Any = vector
                if base64_format:
                    embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
                data.append({"object": "embedding", "index": index, "embedding": embedding})
            return web.json_response(
                {
                    "object": "list",
                    "data": data,
                    "model": _model_of(body),
                    "usage": {"prompt_tokens": PROMPT_TOKENS, "total_tokens": PROMPT_TOKENS},
                }
            )
        except asyncio.CancelledError:
            if not request.get(_DROPPED) and not request.get(_STREAMING):
                self.cancelled_requests += 1
            raise
        finally:
            self.active_requests -= 1

    async def _models(self, request: web.Request) -> web.Response:
        data = [
            {"id": model, "object": "model", "created": 0, "owned_by": "vllm"}
            for model in self.models
        ]
        return web.json_response({"object": "list", "data": data})

    async def _health(self, request: web.Request) -> web.Response:
        self.health_probes += 1
        if self.health_delay_s:
            await asyncio.sleep(self.health_delay_s)
        return web.Response(status=self.health_status)

    async def _metrics(self, request: web.Request) -> web.Response:
        self.metrics_scrapes += 1
        labels = f'engine="0",model_name="{self.models[0]}"'
        text = (
            "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
            "# TYPE vllm:num_requests_running gauge\n"
            f"vllm:num_requests_running{{{labels}}} {float(self.active_requests)}\n"
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
            "# TYPE vllm:num_requests_waiting gauge\n"
            f"vllm:num_requests_waiting{{{labels}}} {float(self.waiting)}\n"
            "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n"
            "# TYPE vllm:kv_cache_usage_perc gauge\n"
            f"vllm:kv_cache_usage_perc{{{labels}}} {float(self.kv_usage)}\n"
        )
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    # -- generation ----------------------------------------------------------------------------

    async def _record(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        headers = {key.lower(): value for key, value in request.headers.items()}
        self.requests.append(RecordedRequest(request.path, headers, body))
        return body

    async def _faults(self, request: web.Request) -> web.StreamResponse | None:
        """Apply the faults that act before any byte of the answer; a response ends early."""
        if self.stall_s:
            await asyncio.sleep(self.stall_s)
        if self.reset_before_first_byte:
            return await _reset(request)
        if self.status is not None:
            return web.json_response(self.error_body(self.status), status=self.status)
        return None

    async def _generate(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        body = await self._record(request)
        self.active_requests += 1
        try:
            early = await self._faults(request)
            if early is not None:
                return early
            if isinstance(body, dict) and body.get("stream") is True:
                return await self._stream(request, body, chat=chat)
            return web.json_response(self._completion(body, chat=chat))
        except asyncio.CancelledError:
            if not request.get(_DROPPED) and not request.get(_STREAMING):
                self.cancelled_requests += 1
            raise
        finally:
            self.active_requests -= 1

    def _completion(self, body: Any, *, chat: bool) -> dict[str, Any]:
        text = f"from {self.name}"
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop", "logprobs": None}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-{self.name}-{len(self.requests)}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": _model_of(body),
            "choices": [choice],
            "usage": self._usage(),
        }

    def _usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": self.chunks,
            "total_tokens": PROMPT_TOKENS + self.chunks,
        }

    async def _stream(
        self, request: web.Request, body: dict[str, Any], *, chat: bool
    ) -> web.StreamResponse:
        reset_after = self.reset_after_chunks
        response = web.StreamResponse(
            status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        self.active_streams += 1
        request[_STREAMING] = True
        try:
            await response.prepare(request)
            for sent, (is_content, event) in enumerate(self._events(body, chat=chat)):
                if reset_after is not None and sent >= reset_after:
                    # Let the events already written leave, then drop the connection (FIN
                    # in the middle of the chunked body).
                    await asyncio.sleep(0.05)
                    request[_DROPPED] = True
                    if request.transport is not None:
                        request.transport.abort()
                    await asyncio.sleep(1)  # cancelled by aiohttp once the drop is noticed
                    return response
                if is_content and self.chunk_delay_s:
                    await asyncio.sleep(self.chunk_delay_s)
                await response.write(f"data: {json.dumps(event)}\n\n".encode())
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            self.completed_streams += 1
            return response
        except (asyncio.CancelledError, ConnectionResetError):
            if not request.get(_DROPPED):
                self.cancelled_streams += 1
            raise
        finally:
            self.active_streams -= 1

    def _events(self, body: dict[str, Any], *, chat: bool) -> list[tuple[bool, dict[str, Any]]]:
        """The stream's events, each with whether it is a content chunk (delayed)."""
        head = {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-{self.name}-{len(self.requests)}",
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": _model_of(body),
        }

        def chunk(text: str | None, finish: str | None = None) -> dict[str, Any]:
            if not chat:
                choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
            else:
                delta: dict[str, Any] = {} if text is None else {"content": text}
                choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return {**head, "choices": [choice]}

        events: list[tuple[bool, dict[str, Any]]] = []
        if chat:
            first = chunk("")
            first["choices"][0]["delta"]["role"] = "assistant"
            events.append((False, first))
        events += [(True, chunk(f"from {self.name} #{i}; ")) for i in range(self.chunks)]
        events.append((False, chunk(None, "stop")))
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            events.append((False, {**head, "choices": [], "usage": self._usage()}))
        return events


def _model_of(body: Any) -> Any:
    return body.get("model") if isinstance(body, dict) else None


def _error_body(status: int, message: str) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "InternalServerError" if status >= 500 else "Error")
    return {"error": {"message": message, "type": kind, "param": None, "code": status}}


async def _reset(request: web.Request) -> web.StreamResponse:
    """Drop the connection with a TCP reset, before any byte of a response."""
    request[_DROPPED] = True
    return await reset_connection(request)
