"""Fault plans in virtual time: window edges, seeded random outages, spot storms, and how
overlapping faults combine."""

from __future__ import annotations

import itertools
import random

import pytest
from pydantic import ValidationError

from tiergate.sim.faults import ActiveFaults, FaultPlan, FaultWindow
from tiergate.spec.simulation import Simulation, parse_duration


def plan(*faults: dict[str, object]) -> FaultPlan:
    return FaultPlan.from_spec(Simulation.model_validate({"faults": list(faults)}).faults)


def test_a_scheduled_outage_is_on_from_its_start_until_just_before_its_end() -> None:
    faults = plan({"kind": "outage", "tier": "cloud", "at": "1h", "duration": "10m"})
    windows = faults.windows(86_400, random.Random(0))
    assert windows == [FaultWindow("outage", "cloud", 3600.0, 4200.0)]  # 1h, 1h + 10m
    active = ActiveFaults(windows)
    assert [active.outage("cloud", t) for t in (3599.999, 3600.0, 4199.999, 4200.0)] == [
        False,
        True,
        True,
        False,
    ]
    assert not active.outage("onprem", 3700.0)  # other tiers are untouched
    assert active.changes("cloud") == [3600.0, 4200.0]


def test_windows_after_the_horizon_are_left_out() -> None:
    faults = plan({"kind": "outage", "tier": "cloud", "at": "2d", "duration": 60})
    assert faults.windows(86_400, random.Random(0)) == []


def test_random_outages_repeat_for_a_seed_and_never_overlap() -> None:
    faults = plan(
        {
            "kind": "randomOutage",
            "tier": "cloud",
            "meanTimeBetweenS": 3600,
            "durationS": {"exponential": {"mean": 120}},
        }
    )
    week = 7 * 86_400
    first = faults.windows(week, random.Random(9))
    assert first == faults.windows(week, random.Random(9))
    assert first != faults.windows(week, random.Random(10))
    # Up about 3,600 s then down about 120 s: about 7 * 86,400 / 3,720 = 163 outages.
    assert 100 < len(first) < 250
    assert all(w.kind == "outage" and w.target == "cloud" for w in first)
    assert all(a.end_s <= b.start_s for a, b in itertools.pairwise(first))
    assert first[-1].start_s < week


def test_a_spot_storm_raises_the_pools_interruption_rate_in_its_window() -> None:
    faults = plan(
        {
            "kind": "spotStorm",
            "pool": "gpu-spot",
            "at": 600,
            "duration": "30m",
            "interruptionsPerInstanceHour": 2,
        },
        {
            "kind": "spotStorm",
            "pool": "gpu-spot",
            "at": 1200,
            "duration": "5m",
            "interruptionsPerInstanceHour": 0.5,
        },
    )
    active = ActiveFaults(faults.windows(86_400, random.Random(0)))
    # 600-2400 at 2; 1200-1500 another 0.5 on top (rates add).
    assert [active.spot_rate("gpu-spot", t) for t in (599, 600, 1200, 1500, 2399, 2400)] == [
        0.0,
        2.0,
        2.5,
        2.0,
        2.0,
        0.0,
    ]
    assert active.spot_rate("cloud", 700) == 0.0


def test_overlapping_slowdowns_multiply_and_errors_answer_their_status() -> None:
    faults = plan(
        {"kind": "slowdown", "tier": "onprem", "at": 0, "duration": 100, "factor": 1.5},
        {"kind": "slowdown", "tier": "onprem", "at": 50, "duration": 100, "factor": 2},
        {"kind": "errors", "tier": "onprem", "at": 10, "duration": 10, "rate": 1, "status": 500},
        {"kind": "errors", "tier": "cloud", "at": 10, "duration": 10, "rate": 0},
    )
    active = ActiveFaults(faults.windows(1000, random.Random(0)))
    assert [active.slowdown("onprem", t) for t in (0, 50, 100, 150)] == [1.5, 3.0, 2.0, 1.0]
    rng = random.Random(1)
    assert active.error_status("onprem", 15, rng) == 500  # rate 1: every request
    assert active.error_status("cloud", 15, rng) is None  # rate 0: none
    assert active.error_status("onprem", 25, rng) is None  # after the window
    assert active.changes() == [0.0, 10.0, 20.0, 50.0, 100.0, 150.0]


def test_an_error_window_answers_about_its_rate() -> None:
    faults = plan({"kind": "errors", "tier": "cloud", "at": 0, "duration": 60, "rate": 0.25})
    active = ActiveFaults(faults.windows(60, random.Random(0)))
    rng = random.Random(2)
    answers = [active.error_status("cloud", 30, rng) for _ in range(4000)]
    # 503 by default; 4,000 * 0.25 = 1,000 expected, sd sqrt(4000 * 0.25 * 0.75) = 27.
    assert set(answers) == {503, None}
    assert abs(answers.count(503) - 1000) < 5 * 27


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(90, 90.0), ("30s", 30.0), ("5m", 300.0), ("1h30m", 5400.0), ("1d", 86400.0), ("250ms", 0.25)],
)
def test_durations_are_seconds_or_strings(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"kind": "meteor", "tier": "cloud", "at": 0, "duration": 1}, "does not match any"),
        ({"kind": "outage", "tier": "cloud", "at": "soon", "duration": 1}, "such as '30s'"),
        ({"kind": "outage", "tier": "cloud", "at": 0, "duration": 0}, "duration must be > 0"),
        ({"kind": "slowdown", "tier": "c", "at": 0, "duration": 1, "factor": 0.5}, "1"),
        ({"kind": "errors", "tier": "c", "at": 0, "duration": 1, "rate": 2}, "1"),
    ],
)
def test_bad_faults_are_refused_at_their_field(fault: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Simulation.model_validate({"faults": [fault]})
    errors = caught.value.errors()
    assert errors[0]["loc"][:2] == ("faults", 0)
    assert message in errors[0]["msg"]
