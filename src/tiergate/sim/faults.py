"""Faults in virtual time: tier outages, slowdowns, error bursts and spot storms.

A :class:`FaultPlan` holds the spec's faults; :meth:`FaultPlan.windows` expands it, for one
run, into :class:`FaultWindow` values (random outages drawn from a seeded generator), sorted by
start. :class:`ActiveFaults` indexes the windows so the simulator can ask, at any virtual time,
what is wrong with a tier or a pool, in O(log n), and learn when that changes.

What the simulator does with them (the lead's core): during an ``outage`` the tier's engines
refuse connections and fail health checks; ``errors`` answers ``status`` to a share ``rate`` of
requests; ``slowdown`` multiplies step times by ``factor``; a ``spotStorm`` adds
``interruptions_per_instance_hour`` to the pool's spot interruption rate. Windows are
half-open, ``[start_s, end_s)``: at ``end_s`` the fault is over.

Overlapping windows of one target combine: outages are one outage, slowdown factors multiply
(two causes compound), error windows draw one after the other (a request escapes all of them
with probability ``(1 - rate1)(1 - rate2)``), spot-storm rates add (independent Poisson
processes add up).
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from tiergate.sim.distributions import Distribution
from tiergate.spec.simulation import (
    ErrorsFault,
    Fault,
    OutageFault,
    RandomOutageFault,
    SlowdownFault,
    SpotStormFault,
)

FaultKind = Literal["outage", "slowdown", "errors", "spotStorm"]


@dataclass(frozen=True, slots=True)
class FaultWindow:
    """One fault over ``[start_s, end_s)``; ``target`` is a tier (a pool for ``spotStorm``).

    Parameters not of its kind keep their neutral values: ``factor`` 1, ``rate`` 0,
    ``status`` 0, ``interruptions_per_instance_hour`` 0.
    """

    kind: FaultKind
    target: str
    start_s: float
    end_s: float
    factor: float = 1.0
    rate: float = 0.0
    status: int = 0
    interruptions_per_instance_hour: float = 0.0

    def covers(self, now: float) -> bool:
        """Whether the fault is on at ``now``."""
        return self.start_s <= now < self.end_s


@dataclass(frozen=True, slots=True)
class RandomOutages:
    """Outages of ``tier`` at random: exponential up times of mean ``mean_time_between_s``
    between the end of one outage and the start of the next, lengths from ``duration_s``."""

    tier: str
    mean_time_between_s: float
    duration_s: Distribution

    def windows(self, horizon_s: float, rng: random.Random) -> list[FaultWindow]:
        """The outages starting before ``horizon_s`` (the last may end after it)."""
        found: list[FaultWindow] = []
        at = 0.0
        while True:
            at += -self.mean_time_between_s * math.log(1.0 - rng.random())
            if at >= horizon_s:
                return found
            length = self.duration_s.sample(rng)
            if length > 0:
                found.append(FaultWindow("outage", self.tier, at, at + length))
            at += length


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """The faults of a run: fixed windows and random outages."""

    scheduled: tuple[FaultWindow, ...] = ()
    random_outages: tuple[RandomOutages, ...] = ()

    @classmethod
    def from_spec(cls, faults: Iterable[Fault]) -> FaultPlan:
        """The plan of the spec's ``simulation.faults``."""
        scheduled: list[FaultWindow] = []
        drawn: list[RandomOutages] = []
        for fault in faults:
            if isinstance(fault, RandomOutageFault):
                drawn.append(RandomOutages(fault.tier, fault.mean_time_between_s, fault.duration_s))
                continue
            end = fault.at + fault.duration
            if isinstance(fault, OutageFault):
                scheduled.append(FaultWindow("outage", fault.tier, fault.at, end))
            elif isinstance(fault, SlowdownFault):
                scheduled.append(
                    FaultWindow("slowdown", fault.tier, fault.at, end, factor=fault.factor)
                )
            elif isinstance(fault, ErrorsFault):
                scheduled.append(
                    FaultWindow(
                        "errors", fault.tier, fault.at, end, rate=fault.rate, status=fault.status
                    )
                )
            elif isinstance(fault, SpotStormFault):
                scheduled.append(
                    FaultWindow(
                        "spotStorm",
                        fault.pool,
                        fault.at,
                        end,
                        interruptions_per_instance_hour=fault.interruptions_per_instance_hour,
                    )
                )
        return cls(tuple(scheduled), tuple(drawn))

    def windows(self, horizon_s: float, rng: random.Random) -> list[FaultWindow]:
        """Every window starting before ``horizon_s``, random outages drawn from ``rng`` (one
        after the other, in the plan's order: a seed gives the same windows), sorted by start,
        then end, kind and target."""
        found = [window for window in self.scheduled if window.start_s < horizon_s]
        for outages in self.random_outages:
            found.extend(outages.windows(horizon_s, rng))
        found.sort(key=lambda w: (w.start_s, w.end_s, w.kind, w.target))
        return found


@dataclass(frozen=True, slots=True)
class FaultState:
    """What is wrong with one target over a stretch of time (see the module for how
    overlapping windows combine). ``errors`` are (rate, status) in start order."""

    outage: bool = False
    slowdown: float = 1.0
    errors: tuple[tuple[float, int], ...] = ()
    interruptions_per_instance_hour: float = 0.0


HEALTHY = FaultState()


class ActiveFaults:
    """The windows of a run, indexed per target as piecewise-constant :class:`FaultState`."""

    __slots__ = ("_index",)

    def __init__(self, windows: Sequence[FaultWindow]) -> None:
        by_target: dict[str, list[FaultWindow]] = {}
        for window in windows:
            by_target.setdefault(window.target, []).append(window)
        self._index = {
            target: _segments(sorted(found, key=lambda w: w.start_s))
            for target, found in by_target.items()
        }

    def state(self, target: str, now: float) -> FaultState:
        """The faults of ``target`` (a tier or a pool) at ``now``."""
        index = self._index.get(target)
        if index is None:
            return HEALTHY
        times, states = index
        return states[bisect_right(times, now)]

    def outage(self, tier: str, now: float) -> bool:
        """Whether ``tier`` is down at ``now``."""
        return self.state(tier, now).outage

    def slowdown(self, tier: str, now: float) -> float:
        """The factor on ``tier``'s step times at ``now`` (1: none)."""
        return self.state(tier, now).slowdown

    def error_status(self, tier: str, now: float, rng: random.Random) -> int | None:
        """The status a request to ``tier`` at ``now`` is answered with by an error window,
        None when it escapes them all (no draw is made when none is on)."""
        for rate, status in self.state(tier, now).errors:
            if rng.random() < rate:
                return status
        return None

    def spot_rate(self, pool: str, now: float) -> float:
        """Extra spot interruptions per instance-hour of ``pool`` at ``now``."""
        return self.state(pool, now).interruptions_per_instance_hour

    def changes(self, target: str | None = None) -> list[float]:
        """The times at which some target's (or ``target``'s) faults change, sorted: where the
        simulator schedules its events (health checks failing, a storm starting)."""
        if target is not None:
            index = self._index.get(target)
            return list(index[0]) if index else []
        return sorted({at for times, _ in self._index.values() for at in times})


def _segments(windows: list[FaultWindow]) -> tuple[list[float], list[FaultState]]:
    """Boundaries t0 < t1 < ... and the states before t0, in [t0, t1), ..., after the last:
    one sweep over the windows' starts and ends, keeping the ones on (in start order)."""
    edges: dict[float, tuple[list[FaultWindow], list[FaultWindow]]] = {}
    for window in windows:
        edges.setdefault(window.start_s, ([], []))[0].append(window)
        edges.setdefault(window.end_s, ([], []))[1].append(window)
    times = sorted(edges)
    states = [HEALTHY]
    on: dict[int, FaultWindow] = {}  # by id, in the order the windows started
    for at in times:
        starting, ending = edges[at]
        for window in ending:
            on.pop(id(window), None)
        for window in starting:
            on[id(window)] = window
        states.append(_combined(on.values()) if on else HEALTHY)
    return times, states


def _combined(on: Iterable[FaultWindow]) -> FaultState:
    outage = False
    slowdown = 1.0
    spot = 0.0
    errors: list[tuple[float, int]] = []
    for window in on:
        kind = window.kind
        if kind == "outage":
            outage = True
        elif kind == "slowdown":
            slowdown *= window.factor
        elif kind == "errors":
            errors.append((window.rate, window.status))
        else:
            spot += window.interruptions_per_instance_hour
    return FaultState(outage, slowdown, tuple(errors), spot)
