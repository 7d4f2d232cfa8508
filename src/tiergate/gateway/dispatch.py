"""The cascade in motion: attempt tiers in order until one serves, up to the commit point.

For a streamed request the commit point is the first event sent to the client; this module
returns just before it, so every fallback condition applies to everything before it. A 200
that is not what was asked for (a body that is no JSON object, or no event stream to a
streaming request) is a tier failure like any other, not a reply to relay.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from tiergate.errors import UpstreamError, UpstreamResetError
from tiergate.gateway.cascade import (
    INVALID_RESPONSE,
    Attempt,
    Verdict,
    exhausted,
    first_byte_budget_s,
    is_tier_failure,
    judge_status,
    latency_limit_s,
)
from tiergate.gateway.gates import CascadeWalk
from tiergate.gateway.inbound import ClientRequest
from tiergate.gateway.openai_errors import OpenAIError
from tiergate.gateway.router import Router
from tiergate.providers import Provider, UpstreamReply, UpstreamRequest, UpstreamStream
from tiergate.telemetry.metrics import GatewayMetrics

AttemptDone = Callable[[str, int | None], None]
AttemptObserver = Callable[[str], AttemptDone]


@dataclass(slots=True)
class Served:
    """The tier that will answer, with its reply or its opened stream and first event."""

    tier: str
    attempts: list[Attempt]
    reply: UpstreamReply | None = None
    reply_json: dict[str, Any] | None = None  # a 200 reply's body, parsed once
    stream: UpstreamStream | None = None
    events: AsyncIterator[bytes] | None = None
    first_event: bytes = b""


@dataclass(slots=True)
class _Cascade:
    router: Router
    request: ClientRequest
    request_id: str
    metrics: GatewayMetrics
    attempts: list[Attempt] = field(default_factory=list)
    moved_from: tuple[str, str] | None = None  # (tier, reason) of the last tier left behind
    observe: AttemptObserver | None = None
    attempt_done: AttemptDone | None = None

    def moved(self, tier: str, reason: str) -> None:
        self.close_move(tier)
        self.moved_from = (tier, reason)

    def close_move(self, to_tier: str) -> None:
        if self.moved_from is not None:
            source, reason = self.moved_from
            self.metrics.fallback(source, to_tier, reason)
            self.moved_from = None


async def run_cascade(
    router: Router,
    request: ClientRequest,
    tiers: tuple[str, ...],
    request_id: str,
    metrics: GatewayMetrics,
    *,
    observe: AttemptObserver | None = None,
) -> Served:
    """Find the tier that serves ``request``; raise :class:`OpenAIError` when none can.

    ``observe(tier)`` is called as each attempt starts; the callable it returns is called with
    the attempt's outcome (``ok`` or the reason it moved on) and status (for traces).
    """
    cascade = _Cascade(router, request, request_id, metrics, observe=observe)
    # The order of the tiers is the pure walk the simulator runs too; here only the I/O.
    walk = CascadeWalk(
        tiers, router.gates, router.fleet.fallback, absent=router.absent_for(request.endpoint)
    )
    while (step := walk.next(router.clock())) is not None:
        for name, reason in step.skipped:
            cascade.moved(name, reason)
        served = await _attempt(cascade, step.tier, tier_left=step.tier_left)
        if served is not None:
            return served
    for name, reason in walk.last_skipped:
        cascade.moved(name, reason)
    cascade.close_move("none")
    status, code, message = exhausted(cascade.attempts)
    attempts = [
        {
            "tier": a.tier,
            "reason": a.reason,
            "status": a.status,
            "latency_ms": round(a.latency_s * 1000, 1),
        }
        for a in cascade.attempts
    ]
    raise OpenAIError(
        status, message, type_="upstream_error", code=code, extra={"attempts": attempts}
    )


async def _attempt(cascade: _Cascade, name: str, *, tier_left: bool) -> Served | None:
    """One attempt on tier ``name``; ``tier_left`` says whether another tier could follow."""
    router, request = cascade.router, cascade.request
    tier = router.tiers[name]
    provider = router.providers[name]
    cascade.close_move(name)
    cascade.attempt_done = cascade.observe(name) if cascade.observe is not None else None
    policy = router.fleet.fallback
    # latencyMs is time to first byte: the response headers of a reply (the provider applies
    # it), the first event of a stream (applied here, headers included).
    limit = latency_limit_s(policy, tier_left=tier_left)
    body = request.for_tier(tier.model)
    upstream = UpstreamRequest(request.endpoint, body, cascade.request_id, first_byte_s=limit)
    start = router.clock()
    served: Served | None = None
    status: int | None = None
    try:
        if request.stream:
            budget = first_byte_budget_s(policy, tier.timeouts.first_byte_s, tier_left=tier_left)
            served, status = await _open_stream(provider, upstream, name, cascade.attempts, budget)
        else:
            reply = await provider.send(upstream)
            served, status = Served(name, cascade.attempts, reply=reply), reply.status
    except TimeoutError:
        _failed(cascade, name, "first_byte_timeout", None, start)
        return None
    except UpstreamError as exc:
        _failed(cascade, name, exc.reason, None, start)
        return None
    except _StreamErrorEventError:
        _failed(cascade, name, "stream_error", 200, start)
        return None
    except asyncio.CancelledError:
        router.release(name, router.clock())
        if cascade.attempt_done is not None:
            cascade.attempt_done("cancelled", None)
        raise
    assert served is not None
    assert status is not None
    if status == 200 and served.stream is None and not _well_formed(served, stream=request.stream):
        _failed(cascade, name, INVALID_RESPONSE, status, start)
        return None
    if judge_status(status, policy) is Verdict.FALLBACK:
        _failed(cascade, name, "status", status, start)
        return None
    now = router.clock()
    router.record(name, now, ok=not is_tier_failure(status, policy))
    cascade.attempts.append(Attempt(name, "ok", status, now - start))
    cascade.metrics.attempt_done(name, "ok", now - start)
    if cascade.attempt_done is not None:
        cascade.attempt_done("ok", status)
    return served


def _failed(cascade: _Cascade, name: str, reason: str, status: int | None, start: float) -> None:
    now = cascade.router.clock()
    cascade.router.record(name, now, ok=False)
    cascade.attempts.append(Attempt(name, reason, status, now - start))
    cascade.metrics.attempt_done(name, reason, now - start)
    cascade.moved(name, reason)
    if cascade.attempt_done is not None:
        cascade.attempt_done(reason, status)


def _well_formed(served: Served, *, stream: bool) -> bool:
    """Whether a 200 reply is what was asked for; keeps its parsed body for the caller."""
    if stream:  # a 200 that is no event stream (a provider returns those as replies)
        return False
    assert served.reply is not None
    try:
        data = orjson.loads(served.reply.body)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(data, dict):
        return False
    served.reply_json = data
    return True


class _StreamErrorEventError(Exception):
    """The upstream's first stream event was an error: nothing was committed yet."""


async def _open_stream(
    provider: Provider,
    upstream: UpstreamRequest,
    name: str,
    attempts: list[Attempt],
    budget_s: float,
) -> tuple[Served, int]:
    """Open the stream and read its first event, all within ``budget_s``."""
    async with asyncio.timeout(budget_s):
        opened = await provider.stream(upstream)
        if isinstance(opened, UpstreamReply):
            return Served(name, attempts, reply=opened), opened.status
        events = aiter(opened)
        try:
            first = await anext(events)
        except StopAsyncIteration:
            await opened.aclose()
            raise UpstreamResetError(name, "stream ended before its first event") from None
        except BaseException:
            await opened.aclose()
            raise
    if is_error_event(first):
        await opened.aclose()
        raise _StreamErrorEventError
    return Served(name, attempts, stream=opened, events=events, first_event=first), 200


def is_error_event(event: bytes) -> bool:
    """Whether an SSE event carries an error object (OpenAI's or vLLM's older shape)."""
    if not event.startswith(b"data: {") or b'"error"' not in event:
        return False
    try:
        data = orjson.loads(event[6:])
    except orjson.JSONDecodeError:
        return False
    return isinstance(data, dict) and ("error" in data or data.get("object") == "error")
