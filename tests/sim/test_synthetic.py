"""The synthetic week: arrivals follow the hour-of-week profile, lengths come from the trace,
a seed repeats a run, profile files are read or refused with their line."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from pathlib import Path

import pytest

from tiergate.sim.synthetic import (
    RequestLengths,
    hour_of_week_profile,
    lengths_from_trace,
    read_profile,
    synthetic_requests,
)
from tiergate.sim.workloads import TraceError, TraceRequest

PAIRS = [(100, 20), (2000, 300), (512, 64)]


def test_default_profile_is_business_hours_high_nights_and_weekends_low() -> None:
    profile = hour_of_week_profile()
    assert len(profile) == 168
    assert math.fsum(profile) / 168 == pytest.approx(1.0)
    # Levels 4 / 2 / 1 divided by their mean 328 / 168 = 1.952
    monday_10h, monday_20h, monday_3h = profile[10], profile[20], profile[3]
    saturday_noon = profile[5 * 24 + 12]
    assert monday_10h == pytest.approx(4 * 168 / 328)
    assert monday_20h == pytest.approx(2 * 168 / 328)
    assert monday_3h == saturday_noon == pytest.approx(168 / 328)
    assert profile[4 * 24 + 17] == monday_10h  # Friday 17:00 is still business hours
    assert profile[4 * 24 + 23] == monday_3h  # Friday 23:00 is night


def test_arrivals_per_hour_follow_the_profile() -> None:
    profile = hour_of_week_profile()
    rate = 0.2
    counts = Counter(
        int(r.arrival_s // 3600)
        for r in synthetic_requests(profile, rate, 168 * 3600, PAIRS, seed=11)
    )
    for hour in range(168):
        # Poisson: expected = rate * 3600 * weight (720 * 2.049 = 1475 at a business hour,
        # 369 at night), standard deviation its square root; 5 sigma is never reached by chance.
        expected = rate * 3600 * profile[hour]
        assert abs(counts[hour] - expected) < 5 * math.sqrt(expected), hour


def test_time_zero_is_the_start_hour_of_week() -> None:
    flat_but_one = [0.0] * 168
    flat_but_one[50] = 1.0  # only hour 50 has traffic
    requests = list(
        synthetic_requests(flat_but_one, 1.0, 7200, PAIRS, seed=1, start_hour_of_week=49)
    )
    # Hour 49 (the run's first hour) is empty; hour 50 has 1.0 * 1.0 = 1 request/s for
    # 3600 s (weights are used as given: synthetic_requests does not rescale them), sd 60.
    assert requests
    assert all(3600 <= r.arrival_s < 7200 for r in requests)
    assert abs(len(requests) - 3600) < 5 * 60


def test_a_seed_repeats_the_run_and_another_seed_does_not() -> None:
    def run(seed: int) -> list[TraceRequest]:
        return list(synthetic_requests(hour_of_week_profile(), 1.0, 3600, PAIRS, seed=seed))

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_arrivals_are_in_order_and_inside_the_duration() -> None:
    arrivals = [r.arrival_s for r in synthetic_requests([1.0] * 168, 2.0, 5000.5, PAIRS, seed=2)]
    assert arrivals == sorted(arrivals)
    assert arrivals[0] > 0
    assert arrivals[-1] < 5000.5


def test_lengths_come_only_from_the_given_pairs_and_all_of_them() -> None:
    drawn = Counter(
        (r.prompt_tokens, r.output_tokens)
        for r in synthetic_requests([1.0] * 168, 1.0, 3000, PAIRS, seed=3)
    )
    assert set(drawn) == set(PAIRS)
    # With replacement, uniformly: about 1/3 of ~3,000 each (sd of a count ~ 26).
    assert all(abs(count - sum(drawn.values()) / 3) < 150 for count in drawn.values())


def test_lengths_from_a_trace_are_kept_as_two_columns() -> None:
    trace = (TraceRequest(float(i), 10 + i, i) for i in itertools.count())
    lengths = lengths_from_trace(trace, limit=4)
    assert list(lengths.prompts) == [10, 11, 12, 13]
    assert list(lengths.outputs) == [0, 1, 2, 3]
    assert lengths.prompts.typecode == "I"
    with pytest.raises(ValueError, match="no request lengths"):
        RequestLengths.of([])


def test_a_168_value_file_is_read_and_scaled_to_mean_1(tmp_path: Path) -> None:
    path = tmp_path / "week.txt"
    path.write_text("# hourly weights\n" + "\n".join(["2"] * 84 + ["6"] * 84) + "\n")
    profile = read_profile(path)
    # mean of the weights is (84 * 2 + 84 * 6) / 168 = 4
    assert profile[:84] == (0.5,) * 84
    assert profile[84:] == (1.5,) * 84


def test_csv_and_json_profiles_are_read(tmp_path: Path) -> None:
    csv = tmp_path / "week.csv"
    csv.write_text("\n".join(",".join(["1"] * 24) for _ in range(7)))
    json = tmp_path / "week.json"
    json.write_text("[" + ", ".join(["3"] * 168) + "]")
    assert read_profile(csv) == read_profile(json) == (1.0,) * 168


def test_a_167_value_file_is_refused_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "short.txt"
    path.write_text("\n".join(["1"] * 167) + "\n")
    with pytest.raises(TraceError) as caught:
        read_profile(path)
    # 167 values on lines 1-167: the 168th was expected on line 168.
    assert caught.value.file == str(path)
    assert caught.value.line == 168
    assert "expected 168 values" in str(caught.value)
    assert "got 167" in str(caught.value)


def test_a_bad_value_is_refused_with_its_line_and_hour(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("1,1,1\n1,x,1\n")
    with pytest.raises(TraceError) as caught:
        read_profile(path)
    assert (caught.value.line, caught.value.field) == (2, "hour 4")
    assert str(caught.value) == f"{path}:2: hour 4: expected a number, got 'x'"
