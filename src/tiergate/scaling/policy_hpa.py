"""The baseline: what KEDA's Prometheus triggers and the HPA compute, rule for rule.

Sources: KEDA ``pkg/scalers/prometheus_scaler.go`` and
the ScaledObject docs (v2.20); Kubernetes ``pkg/controller/podautoscaler/horizontal.go`` and
``replica_calculator.go`` and the HPA docs. Each KEDA trigger becomes one HPA metric of type
External; one HPA sync (every 15 s by default) is one :meth:`HpaPolicy.decide` call:

1. Bounds first: ``spec.replicas`` of 0 disables the HPA; above max → max; below min → min
   (these skip the metrics and the behaviour, as in ``reconcileAutoscaler``).
2. Each trigger's query returns one value (:func:`~tiergate.scaling.policy_base.query_value`).
   An empty or NaN result is 0 with KEDA's default ``ignoreNullValues: true`` (a scale-down
   vote: the baseline's trap), and an error (metric unavailable) with ``false``.
3. Per metric (``GetExternalPerPodMetricReplicas`` / ``GetExternalMetricReplicas``):
   ``AverageValue``: ratio = value / (target * current); desired = ceil(value / target),
   independent of the current count. ``Value``: ratio = value / target; desired =
   ceil(ratio * ready pods). Either way, |ratio - 1| ≤ tolerance (0.1) keeps the current count.
4. The largest proposal over the triggers wins. If every metric is unavailable, or some are
   and the rest point down, nothing changes (``computeReplicasForMetrics``).
5. Stabilization (``stabilizeRecommendationWithBehaviors``): the result is
   min(max(current, min of the recommendations over the scale-up window),
   max of the recommendations over the scale-down window); the raw proposal is recorded.
6. Rate limits (``convertDesiredReplicasWithBehaviorRate``): per policy, the count at the
   start of its period (current - added + removed within it) plus ``Pods`` or times
   (1 ± ``Percent``/100) (rounded up when scaling up, truncated when scaling down); ``Max``
   picks the largest change, ``Min`` the smallest, ``Disabled`` none; then min/max replicas.

Values are compared as floats: the sub-milli rounding of KEDA's quantity conversion (which
changed between KEDA versions) is not modelled. ``scalingModifiers``, ``fallback`` and
activation (0↔1) are KEDA features outside the HPA loop and are not modelled either; an HPA
created without a ``behavior`` gets the documented defaults of :class:`HpaBehavior` (the legacy
path, up to max(2 * current, 4), differs slightly).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from tiergate.scaling.policy_base import (
    Guard,
    clamp,
    current_replicas,
    direction,
    query_value,
    trim,
)
from tiergate.scaling.policy_hpa_settings import (
    HpaExternalMetric,
    HpaScalingRules,
    HpaSettings,
    HpaTrigger,
)
from tiergate.scaling.snapshot import Decision, Snapshot


@dataclass(frozen=True, slots=True)
class _Proposal:
    """One metric's replica count (``None``: the metric was unavailable)."""

    label: str
    metric_type: str
    threshold: float
    signal: str
    value: float | None
    desired: int | None
    within_tolerance: bool = False

    def describe(self) -> str:
        return (
            f"{self.label}={self.value:g} {self.metric_type} target "
            f"{self.threshold:g} → {self.desired}"
        )


def propose(trigger: HpaTrigger, snapshot: Snapshot, tolerance: float) -> _Proposal:
    """One trigger's proposal (rules 2 and 3 of the module docstring)."""
    value = query_value(snapshot, trigger.signal, trigger.query_aggregation)
    about = (trigger.label, trigger.metric_type, trigger.threshold, str(trigger.signal))
    if value is None:
        if not trigger.null_as_zero:
            return _Proposal(*about, None, None)
        value = 0.0
    current = current_replicas(snapshot)
    if trigger.metric_type == "AverageValue":
        ratio = value / (trigger.threshold * current)
        desired = math.ceil(value / trigger.threshold)
    else:
        ratio = value / trigger.threshold
        desired = math.ceil(ratio * snapshot.ready)
    if abs(1.0 - ratio) <= tolerance:
        return _Proposal(*about, value, current, within_tolerance=True)
    return _Proposal(*about, value, desired)


def propose_external(
    metric: HpaExternalMetric, value: float | None, snapshot: Snapshot, tolerance: float
) -> _Proposal:
    """An external metric's proposal from its ``value`` (``None``: it could not be fetched):
    rule 3's ``AverageValue`` case."""
    about = (metric.name, "AverageValue", metric.target, metric.name)
    if value is None:
        return _Proposal(*about, None, None)
    current = current_replicas(snapshot)
    ratio = value / (metric.target * current)
    if abs(1.0 - ratio) <= tolerance:
        return _Proposal(*about, value, current, within_tolerance=True)
    return _Proposal(*about, value, math.ceil(value / metric.target))


def _changes_within(events: deque[tuple[float, int]], period_s: float, now: float) -> int:
    """Replicas added (or removed) by the scale events of the last ``period_s`` seconds."""
    cutoff = now - period_s
    return sum(change for at, change in events if at > cutoff)


class HpaPolicy:
    """The HPA's replica calculation for one deployment; see the module docstring for rules.

    State, as in the controller: the recommendations within the stabilization windows and the
    scale events within the longest policy period. A decision whose ``desired`` differs from
    the current count is taken as carried out (the HPA records the event when it rescales).
    """

    __slots__ = ("_recommendations", "_scale_downs", "_scale_ups", "settings")

    def __init__(self, settings: HpaSettings) -> None:
        self.settings = settings
        self._recommendations: deque[tuple[float, int]] = deque()
        self._scale_ups: deque[tuple[float, int]] = deque()
        self._scale_downs: deque[tuple[float, int]] = deque()

    def decide(
        self, snapshot: Snapshot, now: float, external: Mapping[str, float] | None = None
    ) -> Decision:
        """The replica count the HPA sets after one sync at ``now`` (seconds). ``external``:
        the values of the settings' external metrics, by name (one missing is unavailable)."""
        settings = self.settings
        current = current_replicas(snapshot)
        if current == 0:
            return Decision(
                snapshot.deployment,
                0,
                "hold 0: the target was scaled to 0, which disables the HPA",
                guard=Guard.SCALING_DISABLED,
            )
        bounded = clamp(current, settings.min_replicas, settings.max_replicas)
        if bounded != current:
            return self._rescale(
                snapshot,
                now,
                bounded,
                f"{direction(current, bounded)}: outside [{settings.min_replicas}, "
                f"{settings.max_replicas}]",
                guard=Guard.BOUNDS,
            )
        proposals = [propose(t, snapshot, settings.tolerance) for t in settings.triggers]
        values = external or {}
        proposals += [
            propose_external(m, values.get(m.name), snapshot, settings.tolerance)
            for m in settings.external_metrics
        ]
        valid = [p for p in proposals if p.desired is not None]
        best = _largest(valid)
        if best is None or (len(valid) < len(proposals) and _desired(best) < current):
            return self._hold_unavailable(snapshot, proposals, best)
        return self._normalize(snapshot, now, best)

    def _normalize(self, snapshot: Snapshot, now: float, best: _Proposal) -> Decision:
        """Stabilize, rate-limit and bound the largest proposal (rules 5 and 6)."""
        current = current_replicas(snapshot)
        proposed = _desired(best)
        stabilized = self._stabilize(proposed, current, now)
        limited, limit_guard = self._rate_limit(stabilized, current, now)
        guard: Guard | None = None
        if limited != stabilized:
            guard = limit_guard
        elif stabilized != proposed:
            guard = Guard.STABILIZATION
        elif best.within_tolerance:
            guard = Guard.TOLERANCE
        notes = [best.describe()]
        if stabilized != proposed:
            notes.append(f"stabilized to {stabilized}")
        if limited != stabilized:
            notes.append(f"limited to {limited} ({limit_guard})")
        reason = f"{direction(current, limited)}: " + "; ".join(notes)
        return self._rescale(snapshot, now, limited, reason, guard=guard, proposal=best)

    def _stabilize(self, proposed: int, current: int, now: float) -> int:
        """Rule 5: bring ``proposed`` within the window limits, then record it."""
        behavior = self.settings.behavior
        up_cutoff = now - behavior.scale_up.stabilization_window_s
        down_cutoff = now - behavior.scale_down.stabilization_window_s
        up_limit = down_limit = proposed
        for at, recommendation in self._recommendations:
            if at > up_cutoff:
                up_limit = min(up_limit, recommendation)
            if at > down_cutoff:
                down_limit = max(down_limit, recommendation)
        self._recommendations.append((now, proposed))
        trim(self._recommendations, min(up_cutoff, down_cutoff))
        return min(max(current, up_limit), down_limit)

    def _rate_limit(self, desired: int, current: int, now: float) -> tuple[int, Guard | None]:
        """Rule 6: the behaviour's policies, then min/max replicas, in the direction of change."""
        settings = self.settings
        if desired > current:
            limit = max(self._scale_up_limit(current, now), current)
            allowed = min(settings.max_replicas, limit)
            guard = Guard.RATE_LIMIT if limit < settings.max_replicas else Guard.BOUNDS
            return (allowed, guard) if desired > allowed else (desired, None)
        if desired < current:
            limit = min(self._scale_down_limit(current, now), current)
            allowed = max(settings.min_replicas, limit)
            guard = Guard.RATE_LIMIT if limit > settings.min_replicas else Guard.BOUNDS
            return (allowed, guard) if desired < allowed else (desired, None)
        return desired, None

    def _scale_up_limit(self, current: int, now: float) -> int:
        """``calculateScaleUpLimitWithScalingRules``."""
        rules = self.settings.behavior.scale_up
        if rules.select_policy == "Disabled":
            return current
        proposals = []
        for policy in rules.policies:
            start = self._period_start(policy.period_s, current, now)
            if policy.type == "Pods":
                proposals.append(start + policy.value)
            else:
                proposals.append(math.ceil(start * (1 + policy.value / 100)))
        return max(proposals) if rules.select_policy == "Max" else min(proposals)

    def _scale_down_limit(self, current: int, now: float) -> int:
        """``calculateScaleDownLimitWithBehaviors`` (Go's int32() truncates the percentage)."""
        rules = self.settings.behavior.scale_down
        if rules.select_policy == "Disabled":
            return current
        proposals = []
        for policy in rules.policies:
            start = self._period_start(policy.period_s, current, now)
            if policy.type == "Pods":
                proposals.append(start - policy.value)
            else:
                proposals.append(math.trunc(start * (1 - policy.value / 100)))
        # The largest change down is the smallest count.
        return min(proposals) if rules.select_policy == "Max" else max(proposals)

    def _period_start(self, period_s: int, current: int, now: float) -> int:
        added = _changes_within(self._scale_ups, period_s, now)
        removed = _changes_within(self._scale_downs, period_s, now)
        return current - added + removed

    def _rescale(
        self,
        snapshot: Snapshot,
        now: float,
        desired: int,
        reason: str,
        *,
        guard: Guard | None,
        proposal: _Proposal | None = None,
    ) -> Decision:
        """Record a scale event when ``desired`` differs from the current count."""
        current = current_replicas(snapshot)
        behavior = self.settings.behavior
        if desired > current:
            self._record(self._scale_ups, now, desired - current, behavior.scale_up)
        elif desired < current:
            self._record(self._scale_downs, now, current - desired, behavior.scale_down)
        return Decision(
            snapshot.deployment,
            desired,
            reason,
            signal=proposal.signal if proposal else None,
            value=proposal.value if proposal else None,
            guard=str(guard) if guard else None,
        )

    @staticmethod
    def _record(
        events: deque[tuple[float, int]], now: float, change: int, rules: HpaScalingRules
    ) -> None:
        events.append((now, change))
        trim(events, now - rules.longest_period_s)

    def _hold_unavailable(
        self, snapshot: Snapshot, proposals: list[_Proposal], best: _Proposal | None
    ) -> Decision:
        """Rule 4's guard: no change when metrics are missing and the rest do not scale up."""
        current = current_replicas(snapshot)
        missing = ", ".join(p.label for p in proposals if p.desired is None)
        rest = f"; the others say {_desired(best)}" if best is not None else ""
        return Decision(
            snapshot.deployment,
            current,
            f"hold {current}: metric unavailable ({missing}){rest}; the HPA skips scale-down",
            guard=Guard.UNAVAILABLE,
        )


def _largest(proposals: list[_Proposal]) -> _Proposal | None:
    """The first proposal with the largest count (the HPA keeps the first of equals)."""
    best: _Proposal | None = None
    for proposal in proposals:
        if best is None or _desired(proposal) > _desired(best):
            best = proposal
    return best


def _desired(proposal: _Proposal) -> int:
    if proposal.desired is None:
        raise ValueError("an unavailable metric has no replica count")
    return proposal.desired
