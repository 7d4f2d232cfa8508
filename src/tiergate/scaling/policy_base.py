"""Vocabulary shared by the two scaling policies: signals, guards, and reading a snapshot.

A *signal* is one number the policies scale on. Three kinds:

* per-replica gauges (``kv_usage``, ``waiting``, ``running``): one value per ready replica,
  combined by an aggregation (``sum``, ``avg``, ``max``) the way a PromQL query would;
* deployment rates (``request_rate``, ``prompt_token_rate``, ``generation_token_rate``):
  per second, summed over replicas by the reader;
* latency quantiles (``ttft_p95``, ``itl_p95``): seconds over the reader's window.

Reading follows PromQL, not arithmetic on zeros: a replica whose value is ``None`` is absent
from the vector (``sum`` and ``avg`` skip it), and a vector with no sample is *empty*, which
this module returns as ``None``.
"""

from __future__ import annotations

import math
from collections import deque
from enum import StrEnum
from typing import Literal, TypeVar

from tiergate.scaling.snapshot import ReplicaSignals, Snapshot

Aggregation = Literal["sum", "avg", "max"]
T = TypeVar("T")


class Signal(StrEnum):
    """What a policy scales on (the names used in :class:`Decision.signal`)."""

    KV_USAGE = "kv_usage"  # vllm:kv_cache_usage_perc, a 0-1 fraction per replica
    WAITING = "waiting"  # vllm:num_requests_waiting per replica
    RUNNING = "running"  # vllm:num_requests_running per replica
    REQUEST_RATE = "request_rate"
    PROMPT_TOKEN_RATE = "prompt_token_rate"
    GENERATION_TOKEN_RATE = "generation_token_rate"
    TTFT_P95 = "ttft_p95"
    ITL_P95 = "itl_p95"


class Guard(StrEnum):
    """What held or bounded a decision (the names used in :class:`Decision.guard`)."""

    TOLERANCE = "tolerance"  # HPA: ratio within the tolerance band
    UNAVAILABLE = "unavailable"  # HPA: a metric could not be fetched, no scale-down
    RATE_LIMIT = "rate_limit"  # HPA: behavior policies per period
    STABILIZATION = "stabilization"  # both: max recommendation over the scale-down window
    BOUNDS = "bounds"  # both: min/max replicas
    SCALING_DISABLED = "scaling_disabled"  # HPA: target scaled to 0 by hand
    UNKNOWN = "unknown"  # tiergate: some input unknown, no scale-down
    PENDING = "pending"  # tiergate: signal already answered by pending replicas
    PANIC = "panic"  # tiergate: burst, no scale-down while panicking


PER_REPLICA_SIGNALS = frozenset({Signal.KV_USAGE, Signal.WAITING, Signal.RUNNING})
RATE_SIGNALS = frozenset(
    {Signal.REQUEST_RATE, Signal.PROMPT_TOKEN_RATE, Signal.GENERATION_TOKEN_RATE}
)
LATENCY_SIGNALS = frozenset({Signal.TTFT_P95, Signal.ITL_P95})
# Signals whose value is a 0-1 fraction: a threshold above 1 is a percentage by mistake.
FRACTION_SIGNALS = frozenset({Signal.KV_USAGE})


def current_replicas(snapshot: Snapshot) -> int:
    """The deployment's replica count as the HPA sees it (``spec.replicas``): ready + pending."""
    return snapshot.ready + snapshot.pending


def known(value: float | None) -> float | None:
    """``value``, or ``None`` for NaN: a NaN (a quantile with no traffic) is no measurement."""
    if value is None or math.isnan(value):
        return None
    return value


def replica_values(snapshot: Snapshot, signal: Signal) -> list[float]:
    """The known per-replica values of a per-replica signal (unreported replicas left out)."""
    values = (known(_replica_value(replica, signal)) for replica in snapshot.replicas)
    return [value for value in values if value is not None]


def _replica_value(replica: ReplicaSignals, signal: Signal) -> float | None:
    if signal is Signal.KV_USAGE:
        return replica.kv_usage
    if signal is Signal.WAITING:
        return replica.waiting
    if signal is Signal.RUNNING:
        return replica.running
    raise ValueError(f"{signal} is not a per-replica signal")


def scalar_value(snapshot: Snapshot, signal: Signal) -> float | None:
    """A deployment-level signal (rate or quantile) as the reader gave it; ``None`` if unknown."""
    values: dict[Signal, float | None] = {
        Signal.REQUEST_RATE: snapshot.request_rate,
        Signal.PROMPT_TOKEN_RATE: snapshot.prompt_token_rate,
        Signal.GENERATION_TOKEN_RATE: snapshot.generation_token_rate,
        Signal.TTFT_P95: snapshot.ttft_p95_s,
        Signal.ITL_P95: snapshot.itl_p95_s,
    }
    if signal not in values:
        raise ValueError(f"{signal} is a per-replica signal")
    return known(values[signal])


def query_value(snapshot: Snapshot, signal: Signal, aggregation: Aggregation) -> float | None:
    """What a PromQL query over the signal returns: ``sum``/``avg``/``max`` over the replicas
    that reported (PromQL skips absent series), ``None`` for an empty result. Deployment-level
    signals are already one value; the aggregation does not apply to them."""
    if signal not in PER_REPLICA_SIGNALS:
        return scalar_value(snapshot, signal)
    values = replica_values(snapshot, signal)
    if not values:
        return None
    if aggregation == "sum":
        return sum(values)
    if aggregation == "avg":
        return sum(values) / len(values)
    return max(values)


def clamp(replicas: int, low: int, high: int) -> int:
    """``replicas`` bounded to ``[low, high]``."""
    return max(low, min(high, replicas))


def direction(current: int, desired: int) -> str:
    """``scale up 2→5``, ``scale down 5→3`` or ``hold 4``, for decision reasons."""
    if desired > current:
        return f"scale up {current}→{desired}"
    if desired < current:
        return f"scale down {current}→{desired}"
    return f"hold {current}"


def trim(history: deque[tuple[float, T]], cutoff: float) -> None:
    """Drop the timed entries at or before ``cutoff`` (oldest first)."""
    while history and history[0][0] <= cutoff:
        history.popleft()
