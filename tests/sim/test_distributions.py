"""Distributions as the spec writes them: seeded sampling, the lognormal's quantiles, errors."""

from __future__ import annotations

import random
import re

import pytest
from pydantic import ValidationError

from tiergate.sim.distributions import Distribution, DistributionField, parse_distribution
from tiergate.spec.base import SpecModel


class Delays(SpecModel):
    """A spec section with a distribution field, as other sections declare theirs."""

    boot_s: DistributionField = Distribution.fixed(30.0)


def test_a_seed_gives_the_same_draws() -> None:
    dist = parse_distribution({"lognormal": {"median": 0.6, "p95": 1.5}})
    first_rng, second_rng = random.Random(7), random.Random(7)
    first = [dist.sample(first_rng) for _ in range(5)]
    assert first == [dist.sample(second_rng) for _ in range(5)]
    assert len(set(first)) == 5  # and the draws differ from one another
    assert first != [dist.sample(random.Random(8)) for _ in range(5)]


def test_lognormal_has_the_median_and_p95_it_was_given() -> None:
    dist = parse_distribution({"lognormal": {"median": 0.6, "p95": 1.5}})
    rng = random.Random(1)
    draws = sorted(dist.sample(rng) for _ in range(20_000))
    # 20,000 draws: the median is the 10,000th, the p95 the 19,000th.
    assert draws[10_000] == pytest.approx(0.6, rel=0.03)
    assert draws[19_000] == pytest.approx(1.5, rel=0.04)
    # mean = median * exp(sigma^2 / 2), sigma = ln(2.5) / 1.64485 = 0.55707, exp(sigma^2 / 2) = 1.16785
    assert dist.mean == pytest.approx(0.6 * 1.16785, rel=1e-4)


@pytest.mark.parametrize(
    ("value", "mean", "text"),
    [
        (2.5, 2.5, "2.5"),
        ({"uniform": [1, 3]}, 2.0, "uniform(1, 3)"),
        ({"exponential": {"mean": 4}}, 4.0, "exponential(mean 4)"),
        # truncated at 0, far from 0: the mean is the normal's
        ({"normal": {"mean": 10, "sd": 1}}, 10.0, "normal(mean 10, sd 1, truncated at 0)"),
        # mean 0: the half-normal, sd * sqrt(2 / pi) = 0.7979
        ({"normal": {"mean": 0, "sd": 1}}, 0.7979, "normal(mean 0, sd 1, truncated at 0)"),
    ],
)
def test_each_form_has_its_mean_and_description(value: object, mean: float, text: str) -> None:
    dist = parse_distribution(value)
    assert dist.mean == pytest.approx(mean, rel=1e-3)
    assert dist.describe() == text
    assert parse_distribution(dist.to_spec()) == dist


def test_draws_stay_within_their_form() -> None:
    rng = random.Random(3)
    uniform = parse_distribution({"uniform": [1, 3]})
    normal = parse_distribution({"normal": {"mean": 0.1, "sd": 1}})
    assert all(1 <= uniform.sample(rng) <= 3 for _ in range(1000))
    assert all(normal.sample(rng) >= 0 for _ in range(1000))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"gamma": {"k": 2}}, "unknown distribution 'gamma'"),
        ({"uniform": [3, 1]}, "uniform needs 0 <= lo <= hi"),
        ({"uniform": 3}, "uniform takes a list [lo, hi]"),
        ({"lognormal": {"median": 1}}, "lognormal takes {median: N, p95: N}"),
        ({"lognormal": {"median": 2, "p95": 1}}, "lognormal needs 0 < median <= p95"),
        ({"normal": {"mean": "a", "sd": 1}}, "normal takes numbers"),
        ({"exponential": {"mean": 0}}, "exponential needs mean > 0"),
        ({"uniform": [0, 1], "fixed": 2}, "a mapping with one key"),
        (-1, "a fixed value must be >= 0"),
        (True, "expected a number >= 0"),
        ("fast", "expected a number >= 0"),
    ],
)
def test_bad_forms_are_refused_with_the_reason(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_distribution(value)


def test_the_spec_field_reports_at_the_field() -> None:
    assert Delays.model_validate({"bootS": {"uniform": [10, 20]}}).boot_s.mean == 15.0
    assert Delays.model_validate({}).boot_s == Distribution.fixed(30.0)
    with pytest.raises(ValidationError) as caught:
        Delays.model_validate({"bootS": {"lognormal": {"median": 5}}})
    (error,) = caught.value.errors()
    assert error["loc"] == ("bootS",)
    assert "lognormal takes {median: N, p95: N}" in error["msg"]
