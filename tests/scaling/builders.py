"""Snapshot builders for the policy tests: every replica alike unless per-replica tuples given."""

from __future__ import annotations

from collections.abc import Sequence

from tiergate.scaling.snapshot import ReplicaSignals, Role, Snapshot

Gauge = float | None | Sequence[float | None]


def snap(
    ready: int = 2,
    *,
    kv: Gauge = None,
    waiting: Gauge = None,
    running: Gauge = None,
    pending: int = 0,
    pending_ready_at: tuple[float, ...] = (),
    role: Role = Role.UNIFIED,
    at: float = 0.0,
    request_rate: float | None = None,
    prompt_token_rate: float | None = None,
    generation_token_rate: float | None = None,
    ttft: float | None = None,
    itl: float | None = None,
) -> Snapshot:
    """One deployment; ``kv``/``waiting``/``running`` are one value for all ready replicas or
    a tuple with one value per reported replica (``None`` = that value unreported)."""
    listed = [len(g) for g in (kv, waiting, running) if isinstance(g, Sequence)]
    count = max(listed, default=ready)
    kvs, waits, runs = (_per_replica(g, count) for g in (kv, waiting, running))
    replicas = tuple(ReplicaSignals(k, w, r) for k, w, r in zip(kvs, waits, runs, strict=True))
    return Snapshot(
        deployment="llm",
        role=role,
        at=at,
        ready=ready,
        replicas=replicas,
        pending=pending,
        pending_ready_at=pending_ready_at,
        request_rate=request_rate,
        prompt_token_rate=prompt_token_rate,
        generation_token_rate=generation_token_rate,
        ttft_p95_s=ttft,
        itl_p95_s=itl,
    )


def _per_replica(gauge: Gauge, count: int) -> list[float | None]:
    if gauge is None or isinstance(gauge, float | int):
        return [gauge] * count
    return list(gauge)
