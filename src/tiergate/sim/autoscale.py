"""The fleet's pod autoscaling in virtual time: KEDA, the HPA and ``tiergate scale``.

The policies are the live ones (:mod:`tiergate.scaling.from_spec`); this module only gives
them the timing and the signal path a cluster would. Per ``scaling`` entry:

* mode ``hpa``: KEDA's Prometheus triggers and the HPA. Every ``hpaSyncPeriodS`` (15 s, the
  kube-controller-manager default) the HPA asks KEDA's metrics server for each trigger, which
  queries Prometheus at that moment: the :class:`~tiergate.sim.signals.SimPrometheus` snapshot
  at sync time, decided by :class:`~tiergate.scaling.policy_hpa.HpaPolicy` with
  ``hpa_settings(entry)`` (tolerance, stabilization windows and behaviour policies included).
* mode ``tiergate``: the scaler's loop (``tiergate scale --interval``, 5 s) reads the entry's
  signal source (Prometheus, or direct scrapes) and decides with
  :class:`~tiergate.scaling.policy_llm.LlmPolicy`. KEDA serves its latest decision as the
  external metric ``tiergate-desired-replicas-…`` with an ``AverageValue`` target of 1, and
  the HPA turns it into the replica count at each sync (``ceil(desired / 1)``), with its own
  0.1 tolerance and rate limits (the default policies: +max(100 %, 4 pods) and -100 % per 15 s)
  and the zero stabilization windows of the ScaledObject in docs/keda.md. The chain is the
  same ``HpaPolicy`` fed the metric's value.
* ``schedules`` (time-of-day floors) are KEDA cron triggers: one more HPA metric each, worth
  ``desiredReplicas`` inside the window and 1 outside (KEDA's ``cron_scaler.go``), over an
  ``AverageValue`` target of 1. The HPA takes the largest metric, so a floor raises the count
  and never lowers it; leaving the window is a scale-down like any other, held by the
  scale-down stabilization (300 s in mode ``hpa``).
* activation (0 ↔ 1) is KEDA's own loop, every ``pollingIntervalS``: only with
  ``minReplicas: 0``. Active when some trigger is (a Prometheus query above 0, tiergate's
  decision above 0, a cron window open): from 0 it scales to 1; after ``cooldownPeriodS``
  without activity, to 0. With ``minReplicas`` ≥ 1 the HPA alone acts and the loop is not run.

``actuate(deployment, desired)`` is called when the count changes; the node model makes the
pods. Each change is a :class:`ScaleEvent`; :attr:`SimAutoscaler.series` keeps the count over
time per deployment.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from tiergate.scaling.from_spec import hpa_settings, llm_settings
from tiergate.scaling.policy_base import RATE_SIGNALS, Signal, query_value
from tiergate.scaling.policy_hpa import HpaPolicy
from tiergate.scaling.policy_hpa_settings import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    HpaBehavior,
    HpaExternalMetric,
    HpaScalingRules,
    HpaSettings,
)
from tiergate.scaling.policy_llm import LlmPolicy
from tiergate.scaling.policy_llm_settings import ROLE_SIGNALS
from tiergate.scaling.snapshot import Decision, Role, Snapshot
from tiergate.sim.cron import Cron, parse_cron, window, zone
from tiergate.sim.loop import EventLoop
from tiergate.sim.metrics import EngineMetrics
from tiergate.sim.signals import SimPrometheus, SimScrape
from tiergate.spec.cluster import ClusterSpec
from tiergate.spec.scaling import CronSchedule, ScalingEntry

Engines = Callable[[str], Sequence[EngineMetrics]]
Replicas = Callable[[str], tuple[int, int, tuple[float, ...]]]  # ready, pending, ready at
Actuate = Callable[[str, int], None]

# What the PromQL default window is when an hpa entry reads no Prometheus of its own
# (SignalQueries.for_vllm's "1m").
DEFAULT_WINDOW_S = 60.0
# The ScaledObject of docs/keda.md for tiergate's scaler: the HPA follows at once (tiergate
# stabilizes itself), its rate limits stay the defaults.
PASS_THROUGH = HpaBehavior(
    scale_up=DEFAULT_SCALE_UP,
    scale_down=HpaScalingRules(0, DEFAULT_SCALE_DOWN.policies, DEFAULT_SCALE_DOWN.select_policy),
)
SCALER_METRIC = "tiergate-desired-replicas"

_FIELD = {
    Signal.REQUEST_RATE: "request_rate",
    Signal.PROMPT_TOKEN_RATE: "prompt_token_rate",
    Signal.GENERATION_TOKEN_RATE: "generation_token_rate",
    Signal.TTFT_P95: "ttft_p95_s",
    Signal.ITL_P95: "itl_p95_s",
}


@dataclass(frozen=True, slots=True)
class ScaleEvent:
    """One change of a deployment's replica count (``spec.replicas``)."""

    at: float
    deployment: str
    before: int
    after: int
    by: str  # "hpa", "keda" (activation)
    reason: str
    guard: str | None = None


class _Floor:
    """One cron schedule, with its window state cached until its next start or end."""

    __slots__ = ("active", "desired", "end", "name", "start", "tz", "until")

    def __init__(self, schedule: CronSchedule) -> None:
        self.start: Cron = parse_cron(schedule.start)
        self.end: Cron = parse_cron(schedule.end)
        self.tz = zone(schedule.timezone)
        self.desired = schedule.desired_replicas
        self.name = f"cron[{schedule.start} → {schedule.end} {schedule.timezone}]"
        self.until = -float("inf")
        self.active = False

    def is_active(self, now: float, utc_start: dt.datetime) -> bool:
        if now >= self.until:
            when = (utc_start + dt.timedelta(seconds=now)).astimezone(self.tz)
            self.active, until = window(self.start, self.end, when)
            self.until = (until - utc_start).total_seconds()
        return self.active

    def value(self, now: float, utc_start: dt.datetime) -> float:
        """The metric KEDA reports: ``desiredReplicas`` inside the window, 1 outside."""
        return float(self.desired) if self.is_active(now, utc_start) else 1.0


class _Scaled:
    """One entry: its HPA, its scaler (mode tiergate), its floors and what they last did."""

    __slots__ = (
        "deployment",
        "entry",
        "fields",
        "floors",
        "hpa",
        "last_active",
        "latest",
        "llm",
        "role",
        "scrape",
        "series",
        "window_s",
    )

    def __init__(self, entry: ScalingEntry, engines: Engines, now: float) -> None:
        self.entry = entry
        self.deployment = entry.deployment
        self.role = Role(entry.role)
        self.floors = tuple(_Floor(s) for s in entry.schedules)
        crons = tuple(HpaExternalMetric(f.name) for f in self.floors)
        self.llm: LlmPolicy | None = None
        self.latest: Decision | None = None
        self.scrape: SimScrape | None = None
        prometheus = entry.signals.prometheus
        self.window_s = prometheus.window_s if prometheus is not None else DEFAULT_WINDOW_S
        if entry.mode == "hpa":
            settings = replace(hpa_settings(entry), external_metrics=crons)
            signals = {t.signal for t in settings.triggers}
        else:
            llm = llm_settings(entry)
            self.llm = LlmPolicy(llm)
            signals = {signal for signal, _ in llm.targets.items()}
            # LlmPolicy reads its role's rates to tell zero traffic from missing data.
            signals |= ROLE_SIGNALS[self.role] & RATE_SIGNALS
            settings = HpaSettings(
                triggers=(),
                min_replicas=max(entry.min_replicas, 1),
                max_replicas=entry.max_replicas,
                behavior=PASS_THROUGH,
                external_metrics=(HpaExternalMetric(SCALER_METRIC), *crons),
            )
            if entry.signals.scrape is not None:
                # As the live controller: direct scrapes over the stable window.
                self.scrape = SimScrape(engines, window_s=entry.windows.stable_s)
        self.fields = frozenset(_FIELD[s] for s in signals if s in _FIELD)
        self.hpa = HpaPolicy(settings)
        self.last_active = now
        self.series: list[tuple[float, int]] = []


class SimAutoscaler:
    """KEDA + the HPA (+ tiergate's scaler) for ``entries``, on ``loop``'s clock.

    ``engines(deployment)``: the engines serving now (ready pods); ``replicas(deployment)``:
    ``(ready, pending, pending_ready_at)`` from the node model, ready + pending being the
    deployment's ``spec.replicas``; ``actuate(deployment, desired)`` asks for a new count.
    Virtual time 0 is ``utc_start`` (aware), for the cron floors.
    """

    __slots__ = (
        "_actuate",
        "_engines",
        "_loop",
        "_replicas",
        "_scaled",
        "cluster",
        "events",
        "prometheus",
        "utc_start",
    )

    def __init__(
        self,
        loop: EventLoop,
        entries: tuple[ScalingEntry, ...],
        engines: Engines,
        replicas: Replicas,
        actuate: Actuate,
        *,
        cluster_settings: ClusterSpec | None = None,
        utc_start: dt.datetime,
    ) -> None:
        if utc_start.tzinfo is None:
            raise ValueError("utc_start must be an aware datetime (UTC)")
        cluster = cluster_settings or ClusterSpec()
        self._loop = loop
        self._engines = engines
        self._replicas = replicas
        self._actuate = actuate
        self.cluster = cluster
        self.utc_start = utc_start
        self.events: list[ScaleEvent] = []
        self._scaled = [_Scaled(entry, engines, loop.now) for entry in entries]
        on_prometheus = [i for i in self._scaled if i.scrape is None]
        # Prometheus first: a scrape and a sync at the same instant see the scrape.
        self.prometheus: SimPrometheus | None = None
        if on_prometheus:
            self.prometheus = SimPrometheus(
                loop,
                engines,
                [i.deployment for i in on_prometheus],
                scrape_interval_s=cluster.scrape_interval_s,
                retention_s=max(i.window_s for i in on_prometheus) + cluster.scrape_interval_s,
                lookback_delta_s=cluster.lookback_delta_s,
            )
        for item in self._scaled:
            ready, pending, _ = replicas(item.deployment)
            item.series.append((loop.now, ready + pending))
        if any(i.llm is not None for i in self._scaled):
            loop.every(cluster.scaler_interval_s, self._scaler_step)
        loop.every(cluster.hpa_sync_period_s, self._hpa_sync)
        for item in self._scaled:
            if item.entry.min_replicas == 0:
                loop.every(item.entry.polling_interval_s, functools.partial(self._keda_poll, item))

    @property
    def series(self) -> dict[str, list[tuple[float, int]]]:
        """Per deployment, ``(t, replicas)`` at the start and at each change."""
        return {item.deployment: item.series for item in self._scaled}

    def latest(self, deployment: str) -> Decision | None:
        """tiergate's scaler's latest decision for ``deployment`` (mode tiergate)."""
        return next((i.latest for i in self._scaled if i.deployment == deployment), None)

    def _snapshot(self, item: _Scaled, now: float) -> Snapshot:
        ready, pending, ready_at = self._replicas(item.deployment)
        if item.scrape is not None:
            return item.scrape.snapshot(
                item.deployment,
                item.role,
                ready=ready,
                pending=pending,
                pending_ready_at=ready_at,
                now=now,
                fields=item.fields,
            )
        assert self.prometheus is not None  # every entry without scrapes reads Prometheus
        return self.prometheus.snapshot(
            item.deployment,
            item.role,
            window_s=item.window_s,
            ready=ready,
            pending=pending,
            pending_ready_at=ready_at,
            now=now,
            fields=item.fields,
        )

    def _scaler_step(self) -> None:
        """One round of ``tiergate scale``: every tiergate-mode deployment read and decided."""
        now = self._loop.now
        for item in self._scaled:
            if item.llm is not None:
                item.latest = item.llm.decide(self._snapshot(item, now), now)

    def _hpa_sync(self) -> None:
        """One sync of every HPA: metrics fetched now, the count changed if the HPA says so."""
        now = self._loop.now
        for item in self._scaled:
            external = {f.name: f.value(now, self.utc_start) for f in item.floors}
            if item.llm is None:
                snapshot = self._snapshot(item, now)
            else:
                ready, pending, ready_at = self._replicas(item.deployment)
                snapshot = Snapshot(
                    item.deployment,
                    item.role,
                    now,
                    ready,
                    pending=pending,
                    pending_ready_at=ready_at,
                )
                external[SCALER_METRIC] = float(self._scaler_decision(item, now).desired)
            current = snapshot.ready + snapshot.pending
            decision = item.hpa.decide(snapshot, now, external)
            if decision.desired != current:
                self._change(
                    item,
                    now,
                    current,
                    decision.desired,
                    by="hpa",
                    reason=decision.reason,
                    guard=decision.guard,
                )

    def _scaler_decision(self, item: _Scaled, now: float) -> Decision:
        """KEDA's GetMetrics: the scaler's latest decision, decided now if none yet (as the
        live controller answers a first question)."""
        if item.latest is None:
            assert item.llm is not None
            item.latest = item.llm.decide(self._snapshot(item, now), now)
        return item.latest

    def _active(self, item: _Scaled, now: float) -> bool:
        """KEDA's activity: any trigger active (activationThreshold 0 for Prometheus)."""
        if any(f.is_active(now, self.utc_start) for f in item.floors):
            return True
        if item.llm is not None:
            return self._scaler_decision(item, now).desired > 0
        snapshot = self._snapshot(item, now)
        for trigger in item.hpa.settings.triggers:
            value = query_value(snapshot, trigger.signal, trigger.query_aggregation)
            if value is not None and value > 0:
                return True
        return False

    def _keda_poll(self, item: _Scaled) -> None:
        """KEDA's own loop (minReplicas 0 only): activation from 0, deactivation to 0."""
        now = self._loop.now
        ready, pending, _ = self._replicas(item.deployment)
        current = ready + pending
        if self._active(item, now):
            item.last_active = now
            if current == 0:
                self._change(item, now, 0, 1, by="keda", reason="activated: a trigger is active")
        elif current > 0 and now - item.last_active >= item.entry.cooldown_period_s:
            cooldown = item.entry.cooldown_period_s
            reason = f"no trigger active for {cooldown:g} s"
            self._change(item, now, current, 0, by="keda", reason=reason)

    def _change(
        self,
        item: _Scaled,
        now: float,
        before: int,
        after: int,
        *,
        by: str,
        reason: str,
        guard: str | None = None,
    ) -> None:
        self._actuate(item.deployment, after)
        self.events.append(ScaleEvent(now, item.deployment, before, after, by, reason, guard))
        item.series.append((now, after))
