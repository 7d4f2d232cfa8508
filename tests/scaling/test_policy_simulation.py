"""Both policies on one synthetic load: arrivals rise, plateau and fall; a 5 min cold start.

A fluid model, deterministic: each ready replica serves 2 requests/s, a request runs 10 s and
holds 4.5% of a replica's KV cache (so a full replica sits at 0.9), the excess waits in a
queue, TTFT is 0.3 s plus the time to drain the queue. Every 15 s the policy decides and the
deployment follows at once; new replicas serve a cold start later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

from tiergate.scaling.policy import (
    HpaPolicy,
    HpaSettings,
    LlmPolicy,
    LlmPolicySettings,
    RoleTargets,
    ScalingPolicy,
    corrected_seed_hpa_settings,
)
from tiergate.scaling.snapshot import Snapshot

from .builders import snap

STEP_S = 15.0
COLD_START_S = 300.0
CAPACITY = 2.0  # requests/s per replica
SERVICE_S = 10.0
KV_PER_REQUEST = 0.045
BASE_TTFT_S = 0.3
END_S = 5400.0
RISE_S, PLATEAU_S, FALL_S = 600.0, 2400.0, 3000.0


def arrivals(t: float) -> float:
    """Requests/s: 3, ramp to 15 over 30 min, 10 min plateau, ramp down over 10 min, 3."""
    points = [(0.0, 3.0), (RISE_S, 3.0), (PLATEAU_S, 15.0), (FALL_S, 15.0), (FALL_S + 600, 3.0)]
    for (t0, r0), (t1, r1) in pairwise(points):
        if t0 <= t < t1:
            return r0 + (r1 - r0) * (t - t0) / (t1 - t0)
    return points[-1][1]


@dataclass
class Fleet:
    """Ready replicas, replicas starting (their ready times) and the request queue."""

    ready: int = 2
    starting: list[float] = field(default_factory=list)
    queue: float = 0.0

    def snapshot(self, t: float) -> Snapshot:
        rate = arrivals(t)
        served = min(rate + self.queue / STEP_S, self.ready * CAPACITY)
        running = served * SERVICE_S / self.ready
        return snap(
            self.ready,
            kv=min(1.0, running * KV_PER_REQUEST),
            waiting=self.queue / self.ready,
            running=running,
            pending=len(self.starting),
            pending_ready_at=tuple(self.starting),
            at=t,
            request_rate=rate,
            ttft=self.ttft(),
        )

    def ttft(self) -> float:
        return BASE_TTFT_S + self.queue / (self.ready * CAPACITY)

    def follow(self, desired: int, t: float) -> None:
        """Start or stop replicas: the ones still starting go first."""
        current = self.ready + len(self.starting)
        if desired > current:
            self.starting.extend([t + COLD_START_S] * (desired - current))
        for _ in range(current - desired):
            if self.starting:
                self.starting.pop()
            else:
                self.ready -= 1

    def advance(self, t: float) -> None:
        """Serve for one step, then let the replicas due by its end serve."""
        self.queue = max(0.0, self.queue + (arrivals(t) - self.ready * CAPACITY) * STEP_S)
        due = [at for at in self.starting if at <= t + STEP_S]
        self.ready += len(due)
        self.starting = [at for at in self.starting if at > t + STEP_S]


@dataclass
class Outcome:
    changes: list[tuple[float, int, int]]  # (time, from, to)
    queued_request_s: float
    worst_ttft_s: float

    def first_up(self) -> float:
        return next(t for t, old, new in self.changes if new > old)

    def first_down(self) -> float:
        return next(t for t, old, new in self.changes if new < old)

    def last_up_before(self, t0: float) -> float:
        return max(t for t, old, new in self.changes if t < t0 and new > old)


def simulate(policy: ScalingPolicy) -> Outcome:
    fleet = Fleet()
    changes: list[tuple[float, int, int]] = []
    queued = worst = 0.0
    t = 0.0
    while t < END_S:
        current = fleet.ready + len(fleet.starting)
        desired = policy.decide(fleet.snapshot(t), t).desired
        if desired != current:
            changes.append((t, current, desired))
        fleet.follow(desired, t)
        worst = max(worst, fleet.ttft())
        fleet.advance(t)
        queued += fleet.queue * STEP_S
        t += STEP_S
    return Outcome(changes, queued, worst)


def hpa_baseline() -> HpaPolicy:
    """The seed's triggers in correct units, bounds 2..12, default behaviour."""
    return HpaPolicy(HpaSettings(corrected_seed_hpa_settings().triggers, 2, 12))


def tiergate() -> LlmPolicy:
    return LlmPolicy(LlmPolicySettings(RoleTargets.seed(), 2, 12, cold_start_s=COLD_START_S))


def test_tiergate_scales_up_earlier() -> None:
    ours, baseline = simulate(tiergate()), simulate(hpa_baseline())
    assert RISE_S <= ours.first_up() < baseline.first_up()


def test_tiergate_scales_down_later_than_its_window() -> None:
    ours, baseline = simulate(tiergate()), simulate(hpa_baseline())
    down = ours.first_down()
    assert down - ours.last_up_before(down) >= COLD_START_S
    assert down > baseline.first_down()
    assert ours.changes[-1][2] == baseline.changes[-1][2] == 2  # both back at min by the end


def test_no_scale_down_while_arrivals_rise() -> None:
    """The baseline sizes for the queue, then drops replicas while load still rises, then
    pays a second cold start; tiergate only grows during the ramp."""
    ours, baseline = simulate(tiergate()), simulate(hpa_baseline())
    assert all(new > old for t, old, new in ours.changes if t < PLATEAU_S)
    assert any(new < old for t, old, new in baseline.changes if t < PLATEAU_S)


def test_tiergate_queues_less() -> None:
    ours, baseline = simulate(tiergate()), simulate(hpa_baseline())
    assert ours.queued_request_s < baseline.queued_request_s / 4
    assert ours.worst_ttft_s < baseline.worst_ttft_s / 2


def test_simulation_is_deterministic() -> None:
    assert simulate(tiergate()) == simulate(tiergate())
