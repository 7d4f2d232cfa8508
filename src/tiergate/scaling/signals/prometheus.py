"""Signals from the Prometheus HTTP API: one instant query per signal, asked concurrently.

Everything short of a finite number becomes ``None`` and a note, never 0: KEDA's Prometheus
trigger reads NaN and empty results as 0 by default (``ignoreNullValues``), which is a
scale-down vote at the very moment nothing can be measured.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping

import aiohttp
import orjson

from tiergate.scaling.signals.queries import SignalQueries
from tiergate.scaling.snapshot import ReplicaSignals, Role, Snapshot

# One series of an instant query's answer: its labels and its value.
Series = tuple[Mapping[str, str], float]


def parse_query_response(status: int, body: bytes) -> list[Series] | str:
    """The series of a ``/api/v1/query`` answer (a scalar is one series without labels), or
    why there are none to read: an error Prometheus reported, or an answer it cannot have
    meant. Values are floats as Prometheus sent them, NaN and infinities included."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return f"HTTP {status} with a body that is not JSON"
    if not isinstance(payload, dict):
        return f"HTTP {status} with an unexpected body"
    if payload.get("status") != "success":
        kind = payload.get("errorType", "error")
        return f"HTTP {status}: {kind}: {payload.get('error', '(no message)')}"
    try:
        data = payload["data"]
        kind = data["resultType"]
        result = data["result"]
        if kind == "scalar":
            return [({}, float(result[1]))]
        if kind == "vector":
            return [(dict(item["metric"]), float(item["value"][1])) for item in result]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        return f"malformed answer from Prometheus ({exc!r})"
    return f"result of type {kind!r}, expected a vector or a scalar"


class PrometheusSignals:
    """Reads a deployment's signals from Prometheus at ``base_url`` with ``queries``.

    ``session`` is the caller's (it is not closed here); each query may take ``timeout_s``.
    """

    def __init__(
        self,
        base_url: str,
        queries: SignalQueries,
        session: aiohttp.ClientSession,
        *,
        timeout_s: float = 5.0,
    ) -> None:
        self.queries = queries
        self._endpoint = base_url.rstrip("/") + "/api/v1/query"
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def read(
        self,
        deployment: str,
        role: Role,
        *,
        ready: int,
        pending: int = 0,
        pending_ready_at: tuple[float, ...] = (),
        now: float,
    ) -> Snapshot:
        """Ask every query now; ``None`` and a note for each signal that has no finite value.

        ``replicas`` has one entry per replica Prometheus knows, in the order of their
        ``replica_label``, and unknown entries up to ``ready`` when it knows fewer.
        """
        per_replica = self.queries.per_replica()
        wide = self.queries.deployment_wide()
        promqls = [*per_replica.values(), *wide.values()]
        answers = await asyncio.gather(*(self._query(promql) for promql in promqls))
        notes: list[str] = []
        by_replica = {
            signal: self._by_replica(signal, answer, ready, notes)
            for signal, answer in zip(per_replica, answers[: len(per_replica)], strict=True)
        }
        values = {
            signal: _one_value(signal, answer, notes)
            for signal, answer in zip(wide, answers[len(per_replica) :], strict=True)
        }
        return Snapshot(
            deployment=deployment,
            role=role,
            at=now,
            ready=ready,
            replicas=_replicas(by_replica, ready, notes),
            pending=pending,
            pending_ready_at=pending_ready_at,
            request_rate=values["request_rate"],
            prompt_token_rate=values["prompt_token_rate"],
            generation_token_rate=values["generation_token_rate"],
            ttft_p95_s=values["ttft_p95_s"],
            itl_p95_s=values["itl_p95_s"],
            notes=tuple(notes),
        )

    async def _query(self, promql: str) -> list[Series] | str:
        try:
            async with self._session.get(
                self._endpoint, params={"query": promql}, timeout=self._timeout
            ) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return f"Prometheus unreachable ({exc!r})"
        return parse_query_response(status, body)

    def _by_replica(
        self, signal: str, answer: list[Series] | str, ready: int, notes: list[str]
    ) -> dict[str, float | None] | None:
        """One value per replica, or None when the answer as a whole cannot be used."""
        if isinstance(answer, str):
            notes.append(f"{signal}: {answer}")
            return None
        if not answer and ready:
            notes.append(f"{signal}: empty result (no series matched)")
        label = self.queries.replica_label
        values: dict[str, float | None] = {}
        for labels, value in answer:
            replica = labels.get(label)
            if replica is None:
                notes.append(f"{signal}: a series without the label {label!r}: {dict(labels)}")
                return None
            if replica in values:
                notes.append(f"{signal}: several series for {label}={replica!r}")
                return None
            values[replica] = _finite(f"{signal} of {replica}", value, notes)
        return values


def _one_value(signal: str, answer: list[Series] | str, notes: list[str]) -> float | None:
    if isinstance(answer, str):
        notes.append(f"{signal}: {answer}")
        return None
    if not answer:
        notes.append(f"{signal}: empty result (no series matched)")
        return None
    if len(answer) > 1:
        shown = ", ".join(str(dict(labels)) for labels, _ in answer[:3])
        notes.append(f"{signal}: {len(answer)} series where one was expected: {shown}")
        return None
    return _finite(signal, answer[0][1], notes)


def _finite(what: str, value: float, notes: list[str]) -> float | None:
    if math.isnan(value):
        notes.append(f"{what}: NaN (nothing observed in the window)")
        return None
    if math.isinf(value):
        notes.append(f"{what}: {value} (beyond the histogram's largest finite bucket)")
        return None
    return value


def _replicas(
    by_replica: Mapping[str, Mapping[str, float | None] | None], ready: int, notes: list[str]
) -> tuple[ReplicaSignals, ...]:
    """Per-replica answers joined by replica, padded with unknown replicas up to ``ready``."""
    answered = [values for values in by_replica.values() if values is not None]
    names = sorted({name for values in answered for name in values})
    for signal, values in by_replica.items():
        if values is not None:
            absent = [name for name in names if name not in values]
            if absent:
                notes.append(f"{signal}: no series for {', '.join(absent)}")

    def value(signal: str, name: str) -> float | None:
        values = by_replica[signal]
        return None if values is None else values.get(name)

    replicas = [
        ReplicaSignals(
            kv_usage=value("kv_usage", name),
            waiting=value("waiting", name),
            running=value("running", name),
            name=name,
        )
        for name in names
    ]
    if ready and len(names) != ready:  # 0: the caller does not know
        notes.append(f"signals for {len(names)} replicas, {ready} ready")
    unknown = ReplicaSignals(kv_usage=None, waiting=None, running=None)
    replicas += [unknown] * (ready - len(names))
    return tuple(replicas)
