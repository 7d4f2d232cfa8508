"""The scaler's loop: read each deployment's signals, decide in both modes, keep the latest.

Ready and pending replicas come from a :class:`~tiergate.scaling.replicas.ReplicaSource` (the
Kubernetes API in a cluster). Without one, or when it cannot say, the controller takes the
replicas the signals saw as the ready count and knows of no pending replicas (each snapshot
notes it); the KEDA external scaler
serves the decision of each deployment's configured mode, and ``tiergate scale --dry-run``
shows both modes side by side.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import aiohttp

from tiergate.scaling.from_spec import policies
from tiergate.scaling.keda import ScaledObject
from tiergate.scaling.policy import ScalingPolicy
from tiergate.scaling.replicas import ReplicaSource
from tiergate.scaling.signals import PrometheusSignals, ScrapeSignals, SignalQueries, SignalReader
from tiergate.scaling.snapshot import Decision, ReplicaCount, Role, Snapshot
from tiergate.spec.scaling import ScalingEntry

log = logging.getLogger(__name__)

NO_KUBERNETES = "pending replicas unknown (no Kubernetes API): ready = replicas seen"
NO_COUNT = "pending replicas unknown (the replica source could not say): ready = replicas seen"


@dataclass(slots=True)
class Scaled:
    """One deployment: its readers and policies, and what they last said."""

    entry: ScalingEntry
    reader: SignalReader
    policy: ScalingPolicy  # the configured mode's
    other: ScalingPolicy  # the other mode's, for comparison
    snapshot: Snapshot | None = None
    decision: Decision | None = None
    other_decision: Decision | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.entry.deployment, self.entry.role)


class Controller:
    """Decides for every ``scaling`` entry of a fleet, every ``interval_s``."""

    def __init__(
        self,
        entries: tuple[ScalingEntry, ...],
        session: aiohttp.ClientSession,
        clock: Callable[[], float] = time.time,
        replicas: ReplicaSource | None = None,
    ) -> None:
        self._clock = clock
        self._replicas = replicas
        self.scaled: dict[tuple[str, str], Scaled] = {}
        for entry in entries:
            first, other = policies(entry)
            item = Scaled(entry, _reader(entry, session), first, other)
            self.scaled[item.key] = item

    async def step(self) -> None:
        """One round: every deployment read and decided (concurrently)."""
        await asyncio.gather(*(self._decide(item) for item in self.scaled.values()))

    async def _decide(self, item: Scaled) -> None:
        now = self._clock()
        entry = item.entry
        role = Role(entry.role)
        count = None
        if self._replicas is not None:
            count = await self._replicas.count(entry.deployment, now)
        if count is None:
            seen = await item.reader.read(entry.deployment, role, ready=0, now=now)
            why = NO_KUBERNETES if self._replicas is None else NO_COUNT
            snapshot = _with_count(seen, ReplicaCount(len(seen.replicas), note=why))
        else:
            # The reader knows how many replicas should report, and says when some do not.
            snapshot = await item.reader.read(
                entry.deployment,
                role,
                ready=count.ready,
                pending=count.pending,
                pending_ready_at=count.pending_ready_at,
                now=now,
            )
            if count.note is not None:
                snapshot = replace(snapshot, notes=(*snapshot.notes, count.note))
        item.snapshot = snapshot
        item.decision = item.policy.decide(snapshot, now)
        item.other_decision = item.other.decide(snapshot, now)

    async def run(self, interval_s: float, stop: asyncio.Event) -> None:
        """Step every ``interval_s`` until ``stop`` is set; a failed round is logged, not fatal."""
        while not stop.is_set():
            try:
                await self.step()
            except Exception:
                log.exception("a scaling round failed")
            try:
                await asyncio.wait_for(stop.wait(), interval_s)
            except TimeoutError:
                continue

    async def decide(self, target: ScaledObject) -> Decision | None:
        """The KEDA scaler's question: the latest decision for the ScaledObject's deployment."""
        role = target.role.value if target.role is not None else "unified"
        item = self.scaled.get((target.deployment, role))
        if item is None:
            return None
        if item.decision is None:
            await self._decide(item)
        return item.decision


def _reader(entry: ScalingEntry, session: aiohttp.ClientSession) -> SignalReader:
    source = entry.signals
    if source.prometheus is not None:
        queries = SignalQueries.for_vllm(source.prometheus.selector, source.prometheus.window_s)
        return PrometheusSignals(source.prometheus.url, queries, session)
    assert source.scrape is not None  # the spec requires exactly one source
    return ScrapeSignals(source.scrape.urls, session, window_s=entry.windows.stable_s)


def _with_count(snapshot: Snapshot, count: ReplicaCount) -> Snapshot:
    notes = snapshot.notes if count.note is None else (*snapshot.notes, count.note)
    return replace(
        snapshot,
        ready=count.ready,
        pending=count.pending,
        pending_ready_at=count.pending_ready_at,
        notes=notes,
    )
