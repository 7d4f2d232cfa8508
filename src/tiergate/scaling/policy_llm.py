"""tiergate's LLM-aware scaling policy: capacity for the load expected when new replicas serve.

Rules, in the order :meth:`LlmPolicy.decide` applies them (sources in brackets):

1. **Votes.** Each signal the role scales on proposes a replica count from its per-replica
   target. Rates: ceil(forecast at now + cold start / target) (Dynamo planner's throughput
   mode; forecast in :mod:`~tiergate.scaling.policy_forecast`, at most ``max_forecast_growth``
   times the current rate). Per-replica gauges (KV usage, waiting, running):
   ceil(mean per replica * ready * growth / target), where growth is the forecast rate over
   the current rate (load rises with arrivals). Latency quantiles only vote
   up: above the objective, ceil(ready * observed / objective) (Dynamo's observed/expected
   correction; latency does not fall in proportion to load, so it never votes down). The
   largest vote wins (HPA: max over metrics).
2. **Answered by pending replicas** [llm-d WVA skips variants with pending pods]. Queues,
   KV usage and latency keep growing while the replicas that will relieve them start, so while
   replicas are pending, or for a stable window after an own scale-up's replicas were due,
   those votes are capped at what was already asked for. Demand (rates) still counts: if the
   forecast demand has grown by more than the tolerance since that scale-up, the cap grows in
   proportion. Pending replicas overdue by a stable window no longer answer anything.
3. **Unknown data** [tiergate; the HPA skips scale-down when metrics are missing]: an unknown
   signal (no value, NaN, some replicas unreported) never lets the deployment shrink; the
   known signals may still scale it up. An empty latency quantile at zero traffic is not
   unknown: there is nothing to measure.
4. **Panic** [Knative KPA]: when the current load (no forecast) needs ``panic_threshold`` times
   the ready replicas, panic starts: no scale-down, and never below the largest count asked
   during the panic; it ends one stable window after the last over-threshold sample.
5. **Bounds**: min and max replicas.
6. **Scale-down stabilization** [HPA scale-down stabilization; window ≥ cold start]: a lower
   count is only taken as the largest recommendation over the window; the first call counts
   as a recommendation of the current size (the past is unknown).

Scale-ups are never delayed or rate-limited: a replica asked for late arrives a cold start
late. The policy keeps only samples of its rates over the stable window, the
recommendations over the scale-down window, the panic state and the last scale-up.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from tiergate.scaling.policy_base import (
    PER_REPLICA_SIGNALS,
    RATE_SIGNALS,
    Guard,
    Signal,
    clamp,
    current_replicas,
    direction,
    replica_values,
    scalar_value,
    trim,
)
from tiergate.scaling.policy_forecast import Forecast, forecast
from tiergate.scaling.policy_llm_settings import ROLE_SIGNALS, LlmPolicySettings
from tiergate.scaling.snapshot import Decision, Snapshot

# Float noise must not add a replica: 1.6 / 0.8 is 2, not 3.
_EPSILON = 1e-9


def _ceil(value: float) -> int:
    return math.ceil(value - _EPSILON)


@dataclass(frozen=True, slots=True)
class _Vote:
    """One signal's proposal; ``desired`` is ``None`` when it abstains or is unknown."""

    signal: Signal
    value: float | None
    desired: int | None = None
    panic_desired: int | None = None  # from the current load, without the forecast
    unknown: str | None = None  # why the value is unknown
    symptom: bool = True  # grows while capacity is short (capped by pending replicas)
    detail: str = ""


@dataclass(frozen=True, slots=True)
class _Answer:
    """An own scale-up whose replicas are on their way."""

    at: float
    desired: int
    signal: Signal | None
    demand: tuple[tuple[Signal, float], ...]  # forecast rates it was sized for


@dataclass(slots=True)
class _Panic:
    since: float
    last_over: float
    peak: int = 0


@dataclass(slots=True)
class _Trace:
    """The count through the guards: the guard that last changed it, and why."""

    desired: int
    guard: Guard | None = None
    notes: list[str] = field(default_factory=list)
    applied: list[Guard] = field(default_factory=list)

    def apply(self, desired: int, guard: Guard, note: str) -> None:
        if desired != self.desired:
            self.desired = desired
            self.guard = guard
            self.notes.append(note)
            self.applied.append(guard)


class LlmPolicy:
    """The LLM-aware policy for one deployment; rules in the module docstring."""

    __slots__ = ("_answer", "_panic", "_rates", "_recommendations", "_started", "settings")

    def __init__(self, settings: LlmPolicySettings) -> None:
        self.settings = settings
        signals = ROLE_SIGNALS[settings.role] & RATE_SIGNALS
        self._rates: dict[Signal, deque[tuple[float, float]]] = {
            signal: deque() for signal in sorted(signals)
        }
        self._recommendations: deque[tuple[float, int]] = deque()
        self._started = False
        self._answer: _Answer | None = None
        self._panic: _Panic | None = None

    def decide(self, snapshot: Snapshot, now: float) -> Decision:
        """The replica count for ``snapshot``'s deployment at ``now`` (seconds), and why."""
        if snapshot.role != self.settings.role:
            raise ValueError(
                f"{snapshot.deployment} is a {snapshot.role} deployment; this policy scales "
                f"{self.settings.role}"
            )
        current = current_replicas(snapshot)
        forecasts = self._observe(snapshot, now)
        votes = self._votes(snapshot, forecasts)
        best, trace = self._largest_vote(votes, snapshot, now, forecasts)
        self._hold_unknown(trace, votes, current)
        self._hold_panic(trace, votes, snapshot, now)
        settings = self.settings
        bounded = clamp(trace.desired, settings.min_replicas, settings.max_replicas)
        trace.apply(
            bounded, Guard.BOUNDS, f"bounded to [{settings.min_replicas}, {settings.max_replicas}]"
        )
        self._stabilize(trace, current, now)
        if trace.desired > current:
            self._answer = _Answer(
                now,
                trace.desired,
                best.signal if best else None,
                tuple((signal, f.value) for signal, f in forecasts.items()),
            )
        return _decision(snapshot, trace, best)

    def _observe(self, snapshot: Snapshot, now: float) -> dict[Signal, Forecast]:
        """Record the rates of ``snapshot`` and forecast each at now + cold start."""
        settings = self.settings
        forecasts: dict[Signal, Forecast] = {}
        for signal, samples in self._rates.items():
            value = scalar_value(snapshot, signal)
            if value is not None:
                samples.append((now, value))
            trim(samples, now - settings.stable_window_s)
            result = forecast(
                samples,
                now,
                horizon_s=settings.horizon_s,
                stable_window_s=settings.stable_window_s,
                panic_window_s=settings.panic_window_s,
                max_growth=settings.max_forecast_growth,
            )
            if result is not None:
                forecasts[signal] = result
        return forecasts

    def _votes(self, snapshot: Snapshot, forecasts: dict[Signal, Forecast]) -> list[_Vote]:
        """Rule 1: one vote per configured signal."""
        growth = max((f.growth for f in forecasts.values()), default=1.0)
        horizon = self.settings.horizon_s
        idle = _idle(snapshot, self._rates)
        votes = []
        for signal, target in self.settings.targets.items():
            if signal in PER_REPLICA_SIGNALS:
                votes.append(_load_vote(signal, target, snapshot, growth, horizon))
            elif signal in RATE_SIGNALS:
                votes.append(_rate_vote(signal, target, snapshot, forecasts.get(signal), horizon))
            else:
                votes.append(_latency_vote(signal, target, snapshot, idle))
        return votes

    def _largest_vote(
        self,
        votes: list[_Vote],
        snapshot: Snapshot,
        now: float,
        forecasts: dict[Signal, Forecast],
    ) -> tuple[_Vote | None, _Trace]:
        """Rules 1 and 2: the largest vote, with symptom votes capped by pending replicas."""
        current = current_replicas(snapshot)
        raw = _largest(votes)
        if raw is None:
            unknown = [vote.unknown for vote in votes if vote.unknown]
            if unknown:
                return None, _Trace(
                    current, Guard.UNKNOWN, ["nothing known: " + "; ".join(unknown)]
                )
            return None, _Trace(current, notes=["no signal votes (latency within objectives)"])
        trace = _Trace(_count(raw))
        answered = self._answered(snapshot, now, forecasts)
        if answered is None:
            return raw, trace
        cap, why = answered
        capped = [_capped(vote, cap) for vote in votes]
        best = _largest(capped)
        if best is not None:
            trace.apply(_count(best), Guard.PENDING, f"{raw.detail}, but {why}")
        return best, trace

    def _answered(
        self, snapshot: Snapshot, now: float, forecasts: dict[Signal, Forecast]
    ) -> tuple[int, str] | None:
        """Rule 2: the count symptom votes are capped at, and why; ``None`` for no cap."""
        settings = self.settings
        answer = self._answer
        if answer is not None:
            due = max(answer.at + settings.cold_start_s, *snapshot.pending_ready_at, 0.0)
            if now > due + settings.stable_window_s:
                self._answer = answer = None
        pending = _pending_answers(snapshot, now, settings.stable_window_s)
        if answer is None and not pending:
            return None
        base = max(current_replicas(snapshot), answer.desired if answer else 0)
        why = f"{snapshot.pending} pending replica(s) answer it"
        if answer is not None:
            on = f" on {answer.signal}" if answer.signal else ""
            ago = now - answer.at
            why = f"answered by the scale-up to {answer.desired} {ago:.0f} s ago{on}"
            growth = _demand_growth(answer, forecasts)
            if growth > 1 + settings.tolerance:
                # From a near-zero rate the growth is unbounded; the cap needs no more than max.
                cap = min(base * growth, settings.max_replicas)
                return _ceil(cap), f"{why}, grown x{growth:.2f} in demand since"
        return base, why

    def _hold_unknown(self, trace: _Trace, votes: list[_Vote], current: int) -> None:
        """Rule 3: never below the current count while some signal is unknown."""
        unknown = [vote.unknown for vote in votes if vote.unknown]
        if unknown and trace.desired < current:
            trace.apply(current, Guard.UNKNOWN, "no scale-down on unknown: " + "; ".join(unknown))

    def _hold_panic(
        self, trace: _Trace, votes: list[_Vote], snapshot: Snapshot, now: float
    ) -> None:
        """Rule 4: Knative's panic mode."""
        settings = self.settings
        needs = [vote.panic_desired for vote in votes if vote.panic_desired is not None]
        ready = max(1, snapshot.ready)
        if needs and max(needs) >= settings.panic_threshold * ready:
            if self._panic is None:
                self._panic = _Panic(since=now, last_over=now)
            self._panic.last_over = now
        elif self._panic is not None and now - self._panic.last_over >= settings.stable_window_s:
            self._panic = None
        panic = self._panic
        if panic is None:
            return
        held = max(trace.desired, panic.peak, current_replicas(snapshot))
        since = now - panic.since
        trace.apply(held, Guard.PANIC, f"panicking for {since:.0f} s: no scale-down")
        panic.peak = max(panic.peak, trace.desired)

    def _stabilize(self, trace: _Trace, current: int, now: float) -> None:
        """Rule 6: a lower count only as the largest recommendation over the window."""
        settings = self.settings
        window = settings.scale_down_window_s
        if not self._started:
            self._started = True
            start = clamp(current, settings.min_replicas, settings.max_replicas)
            self._recommendations.append((now, start))
        recommendation = trace.desired
        trim(self._recommendations, now - window)
        if recommendation < current:
            highest = max((r for _, r in self._recommendations), default=recommendation)
            stabilized = min(current, max(recommendation, highest))
            trace.apply(
                stabilized,
                Guard.STABILIZATION,
                f"scale-down stabilized: {highest} recommended within the last {window:g} s",
            )
        self._recommendations.append((now, recommendation))


def _load_vote(
    signal: Signal, target: float, snapshot: Snapshot, growth: float, horizon_s: float
) -> _Vote:
    """A per-replica gauge: mean per replica * ready replicas * expected growth / target."""
    values = replica_values(snapshot, signal)
    ready = snapshot.ready
    if ready == 0 or not values:
        return _Vote(signal, None, unknown=f"{signal}: no ready replica reported it")
    mean = sum(values) / len(values)
    total = mean * ready
    desired = _ceil(total * growth / target)
    unknown = None
    if len(values) < ready:
        unknown = f"{signal}: {ready - len(values)} of {ready} replicas unreported"
    ahead = f", x{growth:.2f} by +{horizon_s:g} s" if growth > 1 else ""
    detail = f"{signal} {mean:g}/replica on {ready}{ahead} needs {desired} at {target:g}/replica"
    return _Vote(signal, mean, desired, _ceil(total / target), unknown, detail=detail)


def _rate_vote(
    signal: Signal, target: float, snapshot: Snapshot, rate: Forecast | None, horizon_s: float
) -> _Vote:
    """A rate: the forecast at now + cold start / the rate one replica serves."""
    value = scalar_value(snapshot, signal)
    if value is None or rate is None:
        return _Vote(signal, None, unknown=f"{signal} unknown")
    desired = _ceil(rate.value / target)
    ahead = f", {rate.value:g}/s by +{horizon_s:g} s" if rate.value > rate.level else ""
    detail = f"{signal} {rate.level:g}/s{ahead} needs {desired} at {target:g}/s per replica"
    return _Vote(signal, value, desired, _ceil(rate.level / target), symptom=False, detail=detail)


def _latency_vote(signal: Signal, target: float, snapshot: Snapshot, idle: bool) -> _Vote:
    """A latency quantile: above the objective, ready * observed / objective; else abstain."""
    value = scalar_value(snapshot, signal)
    if value is None:
        if idle:
            return _Vote(signal, None, detail=f"{signal} empty at zero traffic")
        return _Vote(signal, None, unknown=f"{signal} unknown while serving")
    if value <= target or snapshot.ready == 0:
        return _Vote(signal, value, detail=f"{signal} {value:g} s within {target:g} s")
    desired = _ceil(snapshot.ready * value / target)
    detail = (
        f"{signal} {value:g} s over {target:g} s needs {desired} "
        f"({snapshot.ready} ready * {value / target:.2f})"
    )
    return _Vote(signal, value, desired, desired, detail=detail)


def _idle(snapshot: Snapshot, rates: dict[Signal, deque[tuple[float, float]]]) -> bool:
    """Zero traffic, known: a role rate reads 0, or every ready replica runs and queues 0."""
    if any(scalar_value(snapshot, signal) == 0 for signal in rates):
        return True
    running = replica_values(snapshot, Signal.RUNNING)
    waiting = replica_values(snapshot, Signal.WAITING)
    ready = snapshot.ready
    return (
        ready > 0
        and min(len(running), len(waiting)) >= ready
        and not any(running)
        and not any(waiting)
    )


def _pending_answers(snapshot: Snapshot, now: float, grace_s: float) -> bool:
    """Pending replicas answer the symptoms unless every one is overdue by ``grace_s``."""
    if snapshot.pending == 0:
        return False
    if len(snapshot.pending_ready_at) < snapshot.pending:
        return True  # some without an expected time: assume they are on their way
    return any(at + grace_s >= now for at in snapshot.pending_ready_at)


def _demand_growth(answer: _Answer, forecasts: dict[Signal, Forecast]) -> float:
    """How much the forecast demand grew since ``answer`` (1 when nothing to compare)."""
    ratios = [
        forecasts[signal].value / then
        for signal, then in answer.demand
        if then > 0 and signal in forecasts
    ]
    return max(ratios, default=1.0)


def _capped(vote: _Vote, cap: int) -> _Vote:
    if not vote.symptom or vote.desired is None or vote.desired <= cap:
        return vote
    return _Vote(
        vote.signal, vote.value, cap, vote.panic_desired, vote.unknown, vote.symptom, vote.detail
    )


def _largest(votes: list[_Vote]) -> _Vote | None:
    """The first vote with the largest count (``None`` when none votes)."""
    best: _Vote | None = None
    for vote in votes:
        if vote.desired is not None and (best is None or vote.desired > _count(best)):
            best = vote
    return best


def _count(vote: _Vote) -> int:
    if vote.desired is None:
        raise ValueError(f"{vote.signal} did not vote")
    return vote.desired


def _decision(snapshot: Snapshot, trace: _Trace, best: _Vote | None) -> Decision:
    current = current_replicas(snapshot)
    # A capped vote's detail is already in the pending note.
    parts = [best.detail] if best is not None and Guard.PENDING not in trace.applied else []
    parts.extend(trace.notes)
    reason = f"{direction(current, trace.desired)}: " + "; ".join(parts)
    return Decision(
        snapshot.deployment,
        trace.desired,
        reason,
        signal=str(best.signal) if best else None,
        value=best.value if best else None,
        guard=str(trace.guard) if trace.guard else None,
    )
