"""histogram_quantile computes what PromQL's function of the same name answers."""

from __future__ import annotations

import math

import pytest

from tiergate.scaling.signals import histogram_quantile

INF = math.inf


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        # The 38th of 40 lies 18/20 of the way through (0.1, 0.5].
        (0.95, {0.1: 20, 0.5: 40, INF: 40}, 0.46),
        # Within the first bucket, from 0.
        (0.5, {1.0: 10, INF: 10}, 0.5),
        # In the +Inf bucket: the largest finite bound, as PromQL answers.
        (0.95, {0.1: 1, 0.5: 2, INF: 10}, 0.5),
        # Sums over replicas may dip; evened out to a running maximum first.
        (0.5, {0.1: 5, 0.5: 4, INF: 10}, 0.1),
        # A first bound at or below zero is returned as it is.
        (0.5, {0.0: 10, INF: 10}, 0.0),
    ],
)
def test_quantiles(q: float, buckets: dict[float, float], expected: float) -> None:
    assert histogram_quantile(q, buckets) == pytest.approx(expected)


@pytest.mark.parametrize(
    "buckets",
    [
        {0.1: 0, 0.5: 0, INF: 0},  # no observations: PromQL's NaN, never a latency of 0
        {INF: 10},  # a single bucket
        {0.1: 5, 0.5: 10},  # no +Inf bucket
        {},
    ],
)
def test_undefined_quantiles_are_none(buckets: dict[float, float]) -> None:
    assert histogram_quantile(0.95, buckets) is None


def test_a_quantile_outside_0_1_is_refused() -> None:
    with pytest.raises(ValueError, match="within 0 and 1"):
        histogram_quantile(95, {0.1: 1, INF: 1})
