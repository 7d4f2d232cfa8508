"""The cascade policy: pure decisions, shared by the live gateway and the simulator.

Nothing here does I/O or reads a clock: which tiers a model name enters, whether a tier is
skipped, whether a reply ends the request or moves it on, and what to answer when every tier
failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from tiergate.spec import FallbackPolicy, Fleet

TIMEOUT_REASONS = frozenset({"timeout", "first_byte_timeout", "idle_timeout"})
# Why a 200 moved on: not a JSON object, or no event stream to a streaming request.
INVALID_RESPONSE = "invalid_response"


class Skip(StrEnum):
    """Why a tier was not attempted."""

    UNAVAILABLE = "unavailable"  # its provider is not part of this build
    UNSUPPORTED = "unsupported"  # the provider cannot serve this endpoint
    UNHEALTHY = "unhealthy"  # active health checks marked it down
    BREAKER_OPEN = "breaker_open"  # error rate over the limit, cooling down
    SATURATED = "saturated"  # its engines report saturation (spillover)
    KEY_NOT_ALLOWED = "key_not_allowed"  # the client's key may not use it (governance)


class Verdict(StrEnum):
    SERVE = "serve"  # give this reply to the client
    FALLBACK = "fallback"  # try the next tier


@dataclass(frozen=True, slots=True)
class Attempt:
    """One upstream attempt: ``reason`` is ``ok`` or why it moved on."""

    tier: str
    reason: str
    status: int | None
    latency_s: float


def entry_points(fleet: Fleet) -> dict[str, tuple[str, ...]]:
    """Every name a client may request, mapped to the tiers to try in order.

    A tier's public name enters the cascade at that tier; an upstream model id enters at the
    first tier serving it. Tiers outside the cascade serve their own names alone. Public names
    win over upstream ids when both spell the same string.
    """
    names = [tier.name for tier in fleet.cascade]
    entries: dict[str, tuple[str, ...]] = {}
    for index, tier in enumerate(fleet.cascade):
        entries.setdefault(tier.model, tuple(names[index:]))
    for tier in fleet.standalone:
        entries.setdefault(tier.model, (tier.name,))
    for index, tier in enumerate(fleet.cascade):
        entries[tier.name] = tuple(names[index:])
    for tier in fleet.standalone:
        entries[tier.name] = (tier.name,)
    return entries


def skip_reason(*, healthy: bool, breaker_allows: bool, saturated: bool) -> Skip | None:
    """Why a tier should not be attempted now, or ``None``. Saturation is checked last: a
    saturated tier stays a last resort, unlike an unhealthy one."""
    if not healthy:
        return Skip.UNHEALTHY
    if not breaker_allows:
        return Skip.BREAKER_OPEN
    if saturated:
        return Skip.SATURATED
    return None


def judge_status(status: int, policy: FallbackPolicy) -> Verdict:
    """Whether an upstream reply with ``status`` is given to the client or moves on.

    Exactly the statuses the fleet lists move on, whatever their class: a user listing 404
    (a model missing on one tier) or 401 (one tier's credentials) means it.
    """
    return Verdict.FALLBACK if status in policy.status_codes else Verdict.SERVE


def latency_limit_s(policy: FallbackPolicy, *, tier_left: bool) -> float | None:
    """The first-byte limit ``latencyMs`` sets on an attempt, in seconds, or ``None``.

    The condition exists to move on to a faster tier: with no tier left to move to, the
    attempt waits up to the tier's own timeouts rather than failing the request.
    """
    if policy.latency_ms is None or not tier_left:
        return None
    return policy.latency_ms.limit / 1000


def first_byte_budget_s(policy: FallbackPolicy, own_s: float, *, tier_left: bool) -> float:
    """How long an attempt may wait for its first byte (the first event of a stream): the
    tier's own first-byte timeout, cut to ``latencyMs`` while another tier is left."""
    limit = latency_limit_s(policy, tier_left=tier_left)
    return own_s if limit is None else min(limit, own_s)


def is_tier_failure(status: int, policy: FallbackPolicy) -> bool:
    """Whether a reply counts against the tier's error rate (the breaker's input)."""
    return status >= 500 or judge_status(status, policy) is Verdict.FALLBACK


def exhausted(attempts: Sequence[Attempt]) -> tuple[int, str, str]:
    """HTTP status, error code and message when no tier could serve."""
    if not attempts:
        return 503, "no_tier_available", "No tier could be attempted for this request."
    listed = "; ".join(
        f"{a.tier}: {a.reason}{f' {a.status}' if a.status else ''} "
        f"after {a.latency_s * 1000:.0f} ms"
        for a in attempts
    )
    if all(a.reason in TIMEOUT_REASONS for a in attempts):
        return 504, "upstream_timeout", f"Every tier timed out ({listed})."
    return 502, "all_tiers_failed", f"Every tier failed ({listed})."
