"""What the scaling policy sees and what it decides: plain values, no I/O.

A :class:`Snapshot` is one deployment (one role of one pool) at one instant, built by the
signal readers (Prometheus HTTP API or direct scrapes) or by the simulator. Missing data is
``None`` (never 0): a replica whose metrics could not be read, or a quantile that is NaN
because nothing was served, says "unknown", which the policy must not read as "idle".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    """What a deployment's replicas do: both phases, or one of a disaggregated pair."""

    UNIFIED = "unified"
    PREFILL = "prefill"  # compute-bound: input-token backlog and TTFT
    DECODE = "decode"  # memory-bound: concurrent sequences, KV cache, inter-token latency


@dataclass(frozen=True, slots=True)
class ReplicaSignals:
    """One ready replica's engine metrics (vLLM names in the comments)."""

    kv_usage: float | None  # vllm:kv_cache_usage_perc, a 0-1 fraction
    waiting: float | None  # vllm:num_requests_waiting
    running: float | None  # vllm:num_requests_running
    name: str | None = None  # the pod or /metrics URL it was read from, for operators' notes


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One deployment at ``at`` (seconds, the caller's clock).

    Rates are over the reader's window (per second, summed over replicas); quantiles are in
    seconds over the same window, ``None`` when unknown (no traffic, NaN, no data).
    ``pending`` counts replicas asked for but not ready; ``pending_ready_at`` their expected
    ready times (``at`` + remaining cold start), as far as known.
    """

    deployment: str
    role: Role
    at: float
    ready: int
    replicas: tuple[ReplicaSignals, ...] = ()
    pending: int = 0
    pending_ready_at: tuple[float, ...] = ()
    request_rate: float | None = None  # requests arriving per second
    prompt_token_rate: float | None = None  # vllm:prompt_tokens_total rate
    generation_token_rate: float | None = None  # vllm:generation_tokens_total rate
    ttft_p95_s: float | None = None  # vllm:time_to_first_token_seconds
    itl_p95_s: float | None = None  # vllm:inter_token_latency_seconds
    notes: tuple[str, ...] = field(default=())  # what the reader could not read, for operators


def snapshot_of(
    deployment: str,
    role: Role,
    now: float,
    replicas: Sequence[ReplicaSignals],
    values: Mapping[str, float | None],
    *,
    ready: int,
    pending: int = 0,
    pending_ready_at: tuple[float, ...] = (),
    notes: Sequence[str] = (),
) -> Snapshot:
    """A :class:`Snapshot` from a reader's per-replica signals and its ``values`` of the
    deployment-wide fields by name (``request_rate``, ``prompt_token_rate``,
    ``generation_token_rate``, ``ttft_p95_s``, ``itl_p95_s``; one left out is unknown)."""
    return Snapshot(
        deployment=deployment,
        role=role,
        at=now,
        ready=ready,
        replicas=tuple(replicas),
        pending=pending,
        pending_ready_at=pending_ready_at,
        request_rate=values.get("request_rate"),
        prompt_token_rate=values.get("prompt_token_rate"),
        generation_token_rate=values.get("generation_token_rate"),
        ttft_p95_s=values.get("ttft_p95_s"),
        itl_p95_s=values.get("itl_p95_s"),
        notes=tuple(notes),
    )


@dataclass(frozen=True, slots=True)
class Decision:
    """The replica count a policy wants, and why (which signal or which guard decided)."""

    deployment: str
    desired: int
    reason: str
    signal: str | None = None  # the signal that drove it (kv_usage, waiting, ttft_p95, ...)
    value: float | None = None  # that signal's value
    guard: str | None = None  # the guard that held it (stabilization, pending, bounds, ...)


@dataclass(frozen=True, slots=True)
class ReplicaCount:
    """A deployment's replicas as its actuator (Kubernetes, an emulator pool) knows them.

    ``pending`` are asked for and not ready (scheduled, pulling, loading weights);
    ``pending_ready_at`` their expected ready times on the caller's clock, as far as known
    (fewer entries than ``pending`` when some are unknown). ``note`` says what could not be
    read, for operators.
    """

    ready: int
    pending: int = 0
    pending_ready_at: tuple[float, ...] = ()
    note: str | None = None
