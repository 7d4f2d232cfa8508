"""KEDA + the HPA and tiergate's scaler in virtual time: rate limits, cron floors, the chain."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pytest
from pydantic import ValidationError

from tiergate.sim.autoscale import SimAutoscaler
from tiergate.sim.loop import EventLoop
from tiergate.sim.metrics import EngineMetrics
from tiergate.spec.cluster import ClusterSpec
from tiergate.spec.scaling import ScalingEntry

# 2026-12-07 is a Monday.
MONDAY_0859 = dt.datetime(2026, 12, 7, 8, 59, tzinfo=dt.UTC)
OFFICE_HOURS = {"start": "0 9 * * 1-5", "end": "0 18 * * 1-5", "desiredReplicas": 4}


class Fleet:
    """A stand-in for the node model: every replica asked for is ready at once, and the
    deployment's queue of ``waiting`` requests is shared evenly by its engines."""

    def __init__(self, replicas: int, waiting: float = 0.0) -> None:
        self.replicas = replicas
        self.waiting = waiting
        self.asked: list[tuple[str, int]] = []

    def engines(self, deployment: str) -> Sequence[EngineMetrics]:
        share = self.waiting / self.replicas if self.replicas else 0.0
        return [
            EngineMetrics(f"{deployment}-{i}", lambda: (0.0, share, 0.1))
            for i in range(self.replicas)
        ]

    def count(self, deployment: str) -> tuple[int, int, tuple[float, ...]]:
        return self.replicas, 0, ()

    def actuate(self, deployment: str, desired: int) -> None:
        self.asked.append((deployment, desired))
        self.replicas = desired


def entry(**fields: Any) -> ScalingEntry:
    spec: dict[str, Any] = {
        "deployment": "qwen",
        "mode": "hpa",
        "minReplicas": 1,
        "maxReplicas": 20,
        "targets": {"waitingPerReplica": 5},
        "signals": {"prometheus": {"url": "http://prometheus:9090", "windowS": 60}},
    }
    spec.update(fields)
    return ScalingEntry.model_validate(spec)


def autoscaler(loop: EventLoop, fleet: Fleet, *entries: ScalingEntry) -> SimAutoscaler:
    return SimAutoscaler(
        loop,
        entries,
        fleet.engines,
        fleet.count,
        fleet.actuate,
        cluster_settings=ClusterSpec(),
        utc_start=MONDAY_0859,
    )


def test_hpa_scales_up_on_a_queue_at_the_default_rate() -> None:
    # 100 waiting, 5 per replica: the HPA wants ceil(100 / 5) = 20. The default scale-up
    # allows max(+100 %, +4 pods) per 15 s: 1 -> max(2, 5) = 5 at t = 0, 5 -> max(10, 9) = 10
    # at t = 15, 10 -> max(20, 14) = 20 at t = 30 (each sync sees the scrape of the same
    # instant, which already counts the new replicas).
    loop = EventLoop()
    fleet = Fleet(replicas=1, waiting=100)
    scaler = autoscaler(loop, fleet, entry())
    loop.run(until=60)
    assert scaler.series["qwen"] == [(0.0, 1), (0.0, 5), (15.0, 10), (30.0, 20)]
    assert [(e.before, e.after, e.guard) for e in scaler.events] == [
        (1, 5, "rate_limit"),
        (5, 10, "rate_limit"),
        (10, 20, None),
    ]


def test_a_cron_floor_raises_the_count_in_office_hours_and_gives_it_back_after() -> None:
    # No load: the queue trigger asks for ceil(0 / 5) = 0, bounded to minReplicas 1.
    # 09:00 is t = 60: the cron metric is 4 over a target of 1, so 1 -> 4 (within the +4
    # pods rate limit). 18:00 is t = 60 + 9 h = 32,460: the metric falls to 1, but the
    # scale-down stabilization keeps the largest recommendation of the last 300 s, 4 from the
    # sync at 17:59:45 (t = 32,445), until 32,445 + 300 = 32,745: then 4 -> 1.
    loop = EventLoop()
    fleet = Fleet(replicas=1)
    scaler = autoscaler(loop, fleet, entry(schedules=[OFFICE_HOURS]))
    loop.run(until=60 + 10 * 3600)
    assert scaler.series["qwen"] == [(0.0, 1), (60.0, 4), (32_745.0, 1)]
    assert scaler.events[1].guard is None
    assert "cron[0 9 * * 1-5" in scaler.events[0].reason


def test_the_floor_is_off_at_the_weekend() -> None:
    # Saturday 2026-12-12 00:00 to Sunday 23:59: no window opens.
    loop = EventLoop()
    fleet = Fleet(replicas=1)
    scaler = SimAutoscaler(
        loop,
        (entry(schedules=[OFFICE_HOURS]),),
        fleet.engines,
        fleet.count,
        fleet.actuate,
        utc_start=dt.datetime(2026, 12, 12, tzinfo=dt.UTC),
    )
    loop.run(until=2 * 86_400 - 60)
    assert scaler.events == []


def test_a_floor_never_lowers_a_higher_count() -> None:
    # 40 waiting: the queue asks for 8 (1 -> 5 at t = 0, 5 -> 8 at t = 15); at 09:00 the
    # floor asks for 4, the HPA takes the largest metric, 8: nothing changes.
    loop = EventLoop()
    fleet = Fleet(replicas=1, waiting=40)
    scaler = autoscaler(loop, fleet, entry(schedules=[OFFICE_HOURS]))
    loop.run(until=3600)
    assert scaler.series["qwen"] == [(0.0, 1), (0.0, 5), (15.0, 8)]


def test_tiergate_mode_goes_through_keda_and_the_hpa() -> None:
    # tiergate's scaler (every 5 s, direct scrapes) wants ceil(100 / 5) = 20 at once; KEDA
    # serves 20 as an AverageValue metric over a target of 1, and the HPA's default rate
    # limits still apply on top: 1 -> 5 -> 10 -> 20 at t = 0, 15, 30.
    loop = EventLoop()
    fleet = Fleet(replicas=1, waiting=100)
    scrape = {"scrape": {"urls": ["http://qwen-0:8000/metrics"]}}
    scaler = autoscaler(loop, fleet, entry(mode="tiergate", signals=scrape))
    loop.run(until=60)
    latest = scaler.latest("qwen")
    assert latest is not None
    assert latest.desired == 20
    assert scaler.series["qwen"] == [(0.0, 1), (0.0, 5), (15.0, 10), (30.0, 20)]
    assert all(e.by == "hpa" for e in scaler.events)


def test_tiergate_mode_asks_for_21_of_20_and_the_hpa_tolerance_holds_20() -> None:
    # 105 waiting on 20 replicas, 5 per replica: tiergate wants 21. The HPA's ratio is
    # 21 / 20 = 1.05, within its 0.1 tolerance: it keeps 20.
    loop = EventLoop()
    fleet = Fleet(replicas=20, waiting=105)
    scrape = {"scrape": {"urls": ["http://qwen-0:8000/metrics"]}}
    scaler = autoscaler(loop, fleet, entry(mode="tiergate", maxReplicas=30, signals=scrape))
    loop.run(until=120)
    latest = scaler.latest("qwen")
    assert latest is not None
    assert latest.desired == 21
    assert scaler.events == []


def test_keda_activates_a_deployment_at_zero_when_the_floor_opens() -> None:
    # minReplicas 0 and no replica: nothing to scrape, so only the cron trigger can wake it.
    # KEDA polls every 30 s (t = 0, 30, 60): at t = 60 (09:00) the window is open, KEDA
    # scales 0 -> 1; the HPA, syncing at the same instant just after, takes the floor's 4.
    loop = EventLoop()
    fleet = Fleet(replicas=0)
    scaler = autoscaler(loop, fleet, entry(minReplicas=0, schedules=[OFFICE_HOURS]))
    loop.run(until=120)
    assert scaler.series["qwen"] == [(0.0, 0), (60.0, 1), (60.0, 4)]
    assert [e.by for e in scaler.events] == ["keda", "hpa"]


def test_schedules_and_keda_timing_in_the_spec() -> None:
    scaling = entry(schedules=[OFFICE_HOURS], pollingIntervalS=15)
    assert scaling.polling_interval_s == 15
    assert scaling.cooldown_period_s == 300  # KEDA's cooldownPeriod default
    assert scaling.schedules[0].timezone == "UTC"
    assert scaling.schedules[0].desired_replicas == 4
    cluster = ClusterSpec.model_validate({})
    assert (cluster.hpa_sync_period_s, cluster.scrape_interval_s) == (15, 15)
    assert (cluster.scaler_interval_s, cluster.lookback_delta_s) == (5, 300)


@pytest.mark.parametrize(
    ("schedule", "why"),
    [
        ({**OFFICE_HOURS, "start": "0 9 * *"}, "has 4 fields"),
        ({**OFFICE_HOURS, "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({**OFFICE_HOURS, "end": OFFICE_HOURS["start"]}, "start and end are the same"),
        ({**OFFICE_HOURS, "desiredReplicas": 50}, "above maxReplicas 20"),
    ],
)
def test_bad_schedules_are_refused(schedule: dict[str, Any], why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        entry(schedules=[schedule])


def test_keda_scales_to_zero_a_cooldown_after_the_floor_closes() -> None:
    # The last poll inside the window is at 17:59:30 (t = 32,430); with no other activity KEDA
    # scales to 0 at the first poll 300 s later (t = 32,730), before the HPA's stabilization
    # would have brought it to 1 (t = 32,745); at 0 the HPA is disabled.
    loop = EventLoop()
    fleet = Fleet(replicas=0)
    scaler = autoscaler(loop, fleet, entry(minReplicas=0, schedules=[OFFICE_HOURS]))
    loop.run(until=60 + 10 * 3600)
    assert scaler.series["qwen"] == [(0.0, 0), (60.0, 1), (60.0, 4), (32_730.0, 0)]


@pytest.mark.parametrize(
    ("signals", "seen_at_10", "scaled_at"),
    [
        # Behind Prometheus the scaler still reads the scrape of t = 0 (no queue) at t = 10;
        # the HPA's sync at t = 15 runs before the scaler's step of that instant, so it gets
        # the step of t = 10 (1) and acts on the 20 at its sync of t = 30.
        ({"prometheus": {"url": "http://prometheus:9090"}}, 1, 30.0),
        # Scraping the engines itself, it sees the 100 waiting at t = 5: ceil(100 / 5) = 20,
        # which the HPA takes at t = 15.
        ({"scrape": {"urls": ["http://qwen-0:8000/metrics"]}}, 20, 15.0),
    ],
)
def test_the_scaler_behind_prometheus_sees_a_queue_a_scrape_late(
    signals: dict[str, Any], seen_at_10: int, scaled_at: float
) -> None:
    loop = EventLoop()
    fleet = Fleet(replicas=1)

    def burst() -> None:
        fleet.waiting = 100

    loop.at(1.0, burst)
    scaler = autoscaler(loop, fleet, entry(mode="tiergate", signals=signals))
    loop.run(until=10)
    latest = scaler.latest("qwen")
    assert latest is not None
    assert latest.desired == seen_at_10
    loop.run(until=40)
    # The first change: 1 -> max(2, 5) = 5 under the HPA's default scale-up limit.
    assert scaler.series["qwen"][:2] == [(0.0, 1), (scaled_at, 5)]
