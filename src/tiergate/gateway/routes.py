"""HTTP handlers: the OpenAI-compatible API, health, readiness and metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from tiergate.gateway.dispatch import Served, run_cascade
from tiergate.gateway.inbound import ClientRequest, parse_request
from tiergate.gateway.openai_errors import OpenAIError
from tiergate.gateway.relay import StreamResult, relay_stream
from tiergate.gateway.state import STATE, GatewayState
from tiergate.providers import Endpoint, Usage

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def proxy(endpoint: Endpoint) -> Handler:
    """The handler of one OpenAI endpoint: validate, cascade, answer."""

    async def handle(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        router = state.router  # kept for the whole request, even if a reload swaps it
        metrics = state.metrics
        request_id = request.headers.get("x-request-id") or state.request_ids.next()
        headers = {"x-request-id": request_id, "x-tiergate-attempts": "0"}
        start = router.clock()
        model, tier, status = "unknown", "none", 500
        router.enter()
        metrics.in_flight.inc()
        try:
            raw = await _read_body(request, router.fleet.gateway.max_body_bytes)
            client = parse_request(endpoint, raw)
            tiers = router.entries.get(client.model)
            if tiers is None:
                raise OpenAIError(
                    404,
                    f"The model '{client.model}' does not exist. Valid models: "
                    f"{', '.join(router.entries)}.",
                    param="model",
                    code="model_not_found",
                )
            model = client.model
            served = await run_cascade(router, client, tiers, request_id, metrics)
            tier = served.tier
            headers["x-tiergate-tier"] = tier
            headers["x-tiergate-attempts"] = str(len(served.attempts))
            if served.stream is not None:
                metrics.first_token(model, tier, router.clock() - start)
                status = 200
                return await _stream(request, state, served, client, headers=headers, model=model)
            assert served.reply is not None
            reply = served.reply
            status = reply.status
            if status == 200:
                _count_tokens(state, model, tier, _reply_usage(reply.body))
            return web.Response(
                body=reply.body,
                status=status,
                headers={**headers, "Content-Type": reply.content_type},
            )
        except OpenAIError as exc:
            status = exc.status
            attempts = exc.extra.get("attempts")
            if attempts is not None:
                headers["x-tiergate-attempts"] = str(len(attempts))
            return web.Response(
                body=exc.body(),
                status=status,
                headers={**headers, "Content-Type": "application/json"},
            )
        finally:
            metrics.in_flight.dec()
            metrics.request_done(model, tier, status, router.clock() - start)
            router.leave()

    return handle


async def _stream(
    request: web.Request,
    state: GatewayState,
    served: Served,
    client: ClientRequest,
    *,
    headers: dict[str, str],
    model: str,
) -> web.StreamResponse:
    result = StreamResult()
    try:
        return await relay_stream(request, served, headers, client.include_usage, result)
    finally:
        if result.failure is not None:
            state.router.record(served.tier, state.router.clock(), ok=False)
            state.metrics.attempt_done(served.tier, f"stream_{result.failure}", None)
        _count_tokens(state, model, served.tier, result.usage)


async def _read_body(request: web.Request, limit: int) -> bytes:
    too_large = OpenAIError(
        413,
        f"The request body exceeds the gateway's limit of {limit} bytes.",
        code="request_too_large",
    )
    length = request.content_length
    if length is not None:
        if length > limit:
            raise too_large
        return await request.read()
    parts: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise too_large
        parts.append(chunk)
    return b"".join(parts)


def _reply_usage(body: bytes) -> dict[str, Any] | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    usage = data.get("usage") if isinstance(data, dict) else None
    return usage if isinstance(usage, dict) else None


def _count_tokens(state: GatewayState, model: str, tier: str, usage: dict[str, Any] | None) -> None:
    record = Usage.from_openai(usage)
    if record is not None:
        state.metrics.tokens_used(model, tier, record)


async def list_models(request: web.Request) -> web.Response:
    """``GET /v1/models``: every name a client may request."""
    router = request.app[STATE].router
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": "tiergate"}
        for name in router.entries
    ]
    return web.Response(
        body=orjson.dumps({"object": "list", "data": data}), content_type="application/json"
    )


async def health(request: web.Request) -> web.Response:
    """``GET /health``: liveness; the process answers."""
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


async def ready(request: web.Request) -> web.Response:
    """``GET /ready``: 200 while at least one tier can be attempted, else 503."""
    usable = request.app[STATE].router.usable()
    ok = any(usable.values())
    body = {"status": "ready" if ok else "unavailable", "tiers": usable}
    return web.Response(
        body=orjson.dumps(body), status=200 if ok else 503, content_type="application/json"
    )


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: Prometheus text exposition."""
    body = request.app[STATE].metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", proxy(Endpoint.CHAT))
    app.router.add_post("/v1/completions", proxy(Endpoint.COMPLETIONS))
    app.router.add_post("/v1/embeddings", proxy(Endpoint.EMBEDDINGS))
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
