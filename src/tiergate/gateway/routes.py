"""HTTP handlers: the OpenAI-compatible API, health, readiness and metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from tiergate.gateway.admin import add_admin_routes
from tiergate.gateway.body import read_body
from tiergate.gateway.dispatch import AttemptDone, AttemptObserver, Served, run_cascade
from tiergate.gateway.generation import bounded
from tiergate.gateway.governance import (
    ANONYMOUS,
    Admission,
    GovernanceGate,
    Identity,
    explain_skips,
    record_of,
)
from tiergate.gateway.headers import NO_HEADERS, ClientHeaders, client_headers
from tiergate.gateway.inbound import ClientRequest, parse_request
from tiergate.gateway.openai_errors import OpenAIError
from tiergate.gateway.openapi import openapi_json
from tiergate.gateway.relay import StreamResult, relay_stream
from tiergate.gateway.router import Router
from tiergate.gateway.state import STATE, GatewayState
from tiergate.gateway.unrouted import add_unrouted
from tiergate.providers import Endpoint, Usage
from tiergate.telemetry.tracing import RequestSpan

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CLIENT_CLOSED = 499  # nginx's "client closed request": the status of a request nobody heard


def proxy(endpoint: Endpoint) -> Handler:
    """The handler of one OpenAI endpoint: validate, admit, cascade, answer, record."""

    async def handle(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        router = state.router  # kept for the whole request, even if a reload swaps it
        # First of all: no header value reaches the ledger, a span or the response unchecked.
        invalid: OpenAIError | None = None
        try:
            sent = client_headers(request.headers, router.stage_header)
        except OpenAIError as exc:
            sent, invalid = NO_HEADERS, exc  # refused below, recorded with a fresh id
        request_id = sent.request_id or state.request_ids.next()
        headers = {"x-request-id": request_id, "x-tiergate-attempts": "0"}
        start = router.clock()
        outcome = _Outcome(started=time.time(), sent=sent)
        router.enter()
        state.metrics.in_flight.inc()
        try:
            if invalid is not None:
                raise invalid
            return await _serve(
                request, endpoint, router, request_id, headers=headers, outcome=outcome
            )
        except OpenAIError as exc:
            outcome.status = exc.status
            outcome.error = exc.code or exc.type
            attempts = exc.extra.get("attempts")
            if attempts is not None:
                headers["x-tiergate-attempts"] = str(len(attempts))
                outcome.attempts = [(a["tier"], a["reason"]) for a in attempts]
            return web.Response(
                body=exc.body(),
                status=exc.status,
                headers={**headers, **exc.headers, "Content-Type": "application/json"},
            )
        except asyncio.CancelledError:
            # The client went away before its answer (aiohttp cancels the handler), or the
            # drain ran out: recorded as nginx's 499, not as a 500 of the gateway.
            outcome.status, outcome.error = CLIENT_CLOSED, "client_closed"
            raise
        finally:
            outcome.latency_s = router.clock() - start
            state.metrics.in_flight.dec()
            state.metrics.request_done(
                outcome.model, outcome.tier, outcome.status, outcome.latency_s
            )
            router.leave()
            served = outcome.tier if outcome.tier != "none" else None
            cost = router.cost(served, outcome.usage)
            if router.governance is not None:
                stage = sent.stage
                _record(
                    router.governance, outcome, request_id, stage=stage, served=served, cost=cost
                )
            if outcome.span is not None:
                outcome.span.finish(
                    tier=served,
                    status=outcome.status,
                    usage=outcome.usage,
                    cost_usd=cost,
                    ttft_s=outcome.ttft_s,
                    error=outcome.error,
                )
            state.access.record(request_id, outcome, tier=served, cost=cost)

    return handle


async def _serve(
    request: web.Request,
    endpoint: Endpoint,
    router: Router,
    request_id: str,
    *,
    headers: dict[str, str],
    outcome: _Outcome,
) -> web.StreamResponse:
    state = request.app[STATE]
    gate = router.governance
    start = router.clock()
    if gate is not None:  # before any byte of the body is read: no work for strangers
        outcome.identity = await gate.authenticate(request.headers)
    settings = router.fleet.gateway
    raw = await read_body(request, settings.max_body_bytes, settings.body_timeout_s)
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
    outcome.model = client.model
    if gate is not None:
        client, tiers = await _admit(gate, outcome, client, tiers, size=len(raw), headers=headers)
    observe = None
    if router.tracing_enabled:  # without tracing, no span work on the request path
        outcome.span = _start_span(request, router, client, request_id, outcome)
        observe = _observer(router, outcome.span)
    try:
        served = await run_cascade(
            router, client, tiers, request_id, state.metrics, observe=observe
        )
    except OpenAIError as exc:
        raise explain_skips(exc, outcome.admission) from None
    outcome.attempts = [(a.tier, a.reason) for a in served.attempts]
    outcome.tier = served.tier
    headers["x-tiergate-tier"] = served.tier
    headers["x-tiergate-attempts"] = str(len(served.attempts))
    if served.stream is not None:
        outcome.ttft_s = router.clock() - start
        state.metrics.first_token(client.model, served.tier, outcome.ttft_s)
        outcome.status = 200
        return await _stream(request, state, served, client, headers=headers, outcome=outcome)
    assert served.reply is not None
    reply = served.reply
    outcome.status = reply.status
    if reply.status == 200:
        outcome.usage = Usage.from_openai(served.reply_json and served.reply_json.get("usage"))
        _count_tokens(state, client.model, served.tier, outcome.usage)
    else:
        outcome.error = f"upstream status {reply.status}"
    return web.Response(
        body=reply.body,
        status=reply.status,
        headers={**headers, "Content-Type": reply.content_type},
    )


@dataclass(slots=True)
class _Outcome:
    """What the ledger needs to know about a request, filled in as it goes."""

    started: float
    model: str = "unknown"
    tier: str = "none"
    status: int = 500
    identity: Identity = ANONYMOUS
    admission: Admission | None = None
    attempts: list[tuple[str, str]] = field(default_factory=list)
    usage: Usage | None = None
    ttft_s: float | None = None
    latency_s: float = 0.0
    error: str | None = None
    span: RequestSpan | None = None
    sent: ClientHeaders = NO_HEADERS


def _start_span(
    request: web.Request,
    router: Router,
    client: ClientRequest,
    request_id: str,
    outcome: _Outcome,
) -> RequestSpan:
    identity = outcome.identity
    body = client.body
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    temperature = body.get("temperature")
    return router.tracing.start_request(
        request_id=request_id,
        model=client.model,
        stage=outcome.sent.stage,
        key_id=identity.key_id,
        team=identity.team,
        project=identity.project,
        traceparent=outcome.sent.traceparent,
        tracestate=outcome.sent.tracestate,
        stream=client.stream,
        max_tokens=limit if isinstance(limit, int) else None,
        temperature=float(temperature) if isinstance(temperature, int | float) else None,
        start_time_ns=int(outcome.started * 1e9),
        operation=_OPERATIONS[client.endpoint],
    )


_OPERATIONS = {
    Endpoint.CHAT: "chat",
    Endpoint.COMPLETIONS: "text_completion",
    Endpoint.EMBEDDINGS: "embeddings",
}


def _observer(router: Router, span: RequestSpan) -> AttemptObserver:
    def observe(name: str) -> AttemptDone:
        tier = router.tiers[name]
        attempt = span.attempt(name, tier.provider, tier.model)

        def done(reason: str, status: int | None) -> None:
            attempt.finish(outcome=reason, status=status)

        return done

    return observe


async def _admit(
    gate: GovernanceGate,
    outcome: _Outcome,
    client: ClientRequest,
    tiers: tuple[str, ...],
    *,
    size: int,
    headers: dict[str, str],
) -> tuple[ClientRequest, tuple[str, ...]]:
    """Admission by the gate: the request (bounded when a budget applies) and its tiers."""
    admission = await gate.admit(outcome.identity, client, tiers, size)
    outcome.admission = admission
    if admission.warnings:
        headers["x-tiergate-budget-warning"] = "; ".join(admission.warnings)
    if admission.reservation is not None and admission.bound is not None:
        client = bounded(client, admission.bound)  # the output limit the reservation counted
    return client, admission.tiers


def _record(
    gate: GovernanceGate,
    outcome: _Outcome,
    request_id: str,
    *,
    stage: str | None,
    served: str | None,
    cost: float,
) -> None:
    """The finished request's ledger record, and its settlement."""
    record = record_of(
        started=outcome.started,
        request_id=request_id,
        identity=outcome.identity,
        stage=stage,
        model=outcome.model,
        tier=served,
        attempts=outcome.attempts,
        usage=outcome.usage,
        cost=cost,
        latency_s=outcome.latency_s,
        ttft_s=outcome.ttft_s,
        status=outcome.status,
        error=outcome.error,
    )
    gate.finish(outcome.admission, record)


async def _stream(
    request: web.Request,
    state: GatewayState,
    served: Served,
    client: ClientRequest,
    *,
    headers: dict[str, str],
    outcome: _Outcome,
) -> web.StreamResponse:
    result = StreamResult()
    model = client.model
    try:
        return await relay_stream(request, served, headers, client.include_usage, result)
    finally:
        if result.failure is not None:
            state.router.record(served.tier, state.router.clock(), ok=False)
            state.metrics.attempt_done(served.tier, f"stream_{result.failure}", None)
            outcome.error = f"stream_{result.failure}"
        if result.client_closed:
            outcome.status = CLIENT_CLOSED  # nobody got the rest
            outcome.error = "client_closed"
        outcome.usage = result.billed_usage(client.body)
        _count_tokens(state, model, served.tier, outcome.usage)


def _count_tokens(state: GatewayState, model: str, tier: str, usage: Usage | None) -> None:
    if usage is not None:
        state.metrics.tokens_used(model, tier, usage)


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "tiergate"}


async def list_models(request: web.Request) -> web.Response:
    """``GET /v1/models``: every name a client may request."""
    router = request.app[STATE].router
    data = [_model(name) for name in router.entries]
    return web.Response(
        body=orjson.dumps({"object": "list", "data": data}), content_type="application/json"
    )


async def retrieve_model(request: web.Request) -> web.Response:
    """``GET /v1/models/{model}``: one of those names (the SDKs' ``models.retrieve``)."""
    name = request.match_info["model"]
    if name not in request.app[STATE].router.entries:
        error = OpenAIError(
            404, f"The model '{name}' does not exist.", param="model", code="model_not_found"
        )
        return web.Response(body=error.body(), status=404, content_type="application/json")
    return web.Response(body=orjson.dumps(_model(name)), content_type="application/json")


async def health(request: web.Request) -> web.Response:
    """``GET /health``: liveness; the process answers."""
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


async def ready(request: web.Request) -> web.Response:
    """``GET /ready``: 200 while at least one tier can be attempted and, with
    ``onStoreDown: closed``, the ledger can write; else 503. With governance, ``ledger`` says
    whether the ledger writes (``available``) and why not (``reason``)."""
    router = request.app[STATE].router
    usable = router.usable()
    ok = any(usable.values())
    body: dict[str, Any] = {"tiers": usable}
    gate = router.governance
    if gate is not None:
        problem = gate.store.problem
        ledger: dict[str, Any] = {"available": problem is None}
        if problem is not None:
            ledger["reason"] = problem
            # Such a gateway refuses every request (503 ledger_unavailable): not ready.
            ok = ok and not gate.fails_closed
        body["ledger"] = ledger
    body = {"status": "ready" if ok else "unavailable", **body}
    return web.Response(
        body=orjson.dumps(body), status=200 if ok else 503, content_type="application/json"
    )


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: Prometheus text exposition."""
    state = request.app[STATE]
    if state.router.governance is not None:
        state.router.governance.show_ledger()
    body = state.metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application) -> None:
    add_admin_routes(app)
    app.router.add_post("/v1/chat/completions", proxy(Endpoint.CHAT))
    app.router.add_post("/v1/completions", proxy(Endpoint.COMPLETIONS))
    app.router.add_post("/v1/embeddings", proxy(Endpoint.EMBEDDINGS))
    app.router.add_get("/v1/models", list_models)
    # {model:.+}: model names may hold a slash (``org/model``).
    app.router.add_get("/v1/models/{model:.+}", retrieve_model)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi_json)
    add_unrouted(app)  # last: it answers what the routes above do not take
