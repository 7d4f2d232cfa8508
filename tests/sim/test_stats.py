"""The latency sketch against exact quantiles, merging, SLO attainment; sampled time series."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from tiergate.sim.stats import LogHistogram, TimeSeries

QS = (0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0)


def filled(values: list[float]) -> LogHistogram:
    histogram = LogHistogram()
    for value in values:
        histogram.add(value)
    return histogram


def test_quantiles_of_lognormal_latencies_are_within_one_percent_of_numpy() -> None:
    rng = random.Random(15)
    # TTFTs around 0.3 s with a long tail, and ITLs around 20 ms: the two shapes simulated.
    for mu, sigma in ((math.log(0.3), 1.0), (math.log(0.02), 0.4)):
        values = [rng.lognormvariate(mu, sigma) for _ in range(20_000)]
        histogram = filled(values)
        exact = np.quantile(values, QS)
        for q, want in zip(QS, exact, strict=True):
            got = histogram.quantile(q)
            assert got is not None
            assert abs(got - want) <= 0.01 * want, (q, got, want)


def test_a_few_values_interpolate_like_numpy() -> None:
    histogram = filled([1.0, 2.0, 3.0, 4.0])
    # numpy's default: position q * (n - 1); p50 is halfway between 2 and 3, p90 is 3.7.
    assert histogram.quantile(0.5) == pytest.approx(2.5, rel=0.01)
    assert histogram.quantile(0.9) == pytest.approx(3.7, rel=0.01)
    # The extremes are exact: the first and last values seen.
    assert histogram.quantile(0.0) == 1.0
    assert histogram.quantile(1.0) == 4.0
    assert histogram.mean == 2.5  # (1 + 2 + 3 + 4) / 4, exact
    assert histogram.count == 4


def test_zero_and_huge_values_are_counted_at_their_exact_extremes() -> None:
    histogram = filled([0.0, 0.5, 2e5])
    assert histogram.count == 3
    assert histogram.quantile(0.0) == 0.0
    assert histogram.quantile(1.0) == 2e5
    assert histogram.quantile(0.5) == pytest.approx(0.5, rel=0.01)


def test_negative_and_nan_latencies_are_refused_and_leave_no_trace() -> None:
    histogram = filled([1.0])
    for bad in (-0.001, math.nan):
        with pytest.raises(ValueError, match="latency"):
            histogram.add(bad)
        with pytest.raises(ValueError, match="latency"):
            histogram.add_many(bad, 3)
    assert histogram.count == 1
    assert histogram.mean == 1.0


def test_add_many_counts_like_adding_one_at_a_time() -> None:
    one_by_one = filled([0.02] * 7 + [0.05] * 3)
    batched = LogHistogram()
    batched.add_many(0.02, 7)
    batched.add_many(0.05, 3)
    batched.add_many(0.9, 0)  # nothing
    assert batched.count == one_by_one.count == 10
    assert batched.quantiles((0.5, 0.95)) == one_by_one.quantiles((0.5, 0.95))
    assert batched.mean == pytest.approx(0.029)  # (7 * 0.02 + 3 * 0.05) / 10


def test_merged_halves_give_the_quantiles_of_the_whole() -> None:
    rng = random.Random(7)
    values = [rng.expovariate(2.0) for _ in range(4_000)]
    whole = filled(values)
    left, right = filled(values[:1_000]), filled(values[1_000:])
    left.merge(right)
    assert left.count == 4_000
    assert left.quantiles(QS) == whole.quantiles(QS)
    assert left.mean == pytest.approx(whole.mean)
    assert right.count == 3_000  # merging leaves the other one as it was


def test_histograms_with_different_buckets_do_not_merge() -> None:
    with pytest.raises(ValueError, match="different buckets"):
        LogHistogram().merge(LogHistogram(accuracy=0.01))


def test_attainment_is_the_share_within_the_target() -> None:
    # 90 requests with a first token after 0.5 s, 10 after 3 s: 90% within a 2 s target.
    histogram = filled([0.5] * 90 + [3.0] * 10)
    assert histogram.fraction_at_most(2.0) == pytest.approx(0.9)
    assert histogram.fraction_at_most(10.0) == 1.0
    assert histogram.fraction_at_most(0.1) == 0.0
    # p95 falls among the slow ones: position 0.95 * 99 = 94.05, the 95th value is 3 s.
    assert histogram.quantile(0.95) == pytest.approx(3.0, rel=0.01)


def test_an_empty_histogram_has_no_figures() -> None:
    histogram = LogHistogram()
    assert histogram.quantile(0.5) is None
    assert histogram.mean is None
    assert histogram.fraction_at_most(2.0) is None
    assert histogram.cdf() == ([], [])
    assert histogram.to_json()["p95Seconds"] is None


def test_cdf_rises_to_one_through_the_values() -> None:
    values, fractions = filled([0.1, 0.1, 0.2, 0.4]).cdf()
    assert values == pytest.approx([0.1, 0.2, 0.4], rel=0.01)
    assert fractions == [0.5, 0.75, 1.0]  # 2 of 4, 3 of 4, 4 of 4


def test_quantile_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="q must be"):
        filled([1.0]).quantile(1.5)


def test_time_series_samples_on_its_grid() -> None:
    series = TimeSeries(start_s=3600.0, step_s=60.0)
    series.append(2.0)
    series.append(3.0)
    assert series.times() == [3600.0, 3660.0]
    # A replica count that held at 4 until 3840 s: grid points 3720, 3780 and 3840 get it.
    series.fill_to(3840.0, 4.0)
    assert list(series.values) == [2.0, 3.0, 4.0, 4.0, 4.0]
    series.fill_to(3850.0, 9.0)  # no grid point between 3840 and 3850
    assert len(series) == 5
    assert series.last == 4.0
    with pytest.raises(ValueError, match="step_s"):
        TimeSeries(0.0, 0.0)
