"""Distributions of the simulator's random quantities (delays, durations, rates), as the fleet
spec writes them.

A spec value is a plain number (a fixed value) or a mapping with exactly one key naming the
form::

    ttftS: 0.6                                   # fixed
    ttftS: {uniform: [0.4, 0.9]}                 # uniform on [lo, hi]
    ttftS: {lognormal: {median: 0.6, p95: 1.5}}  # lognormal from its median and 95th percentile
    ttftS: {normal: {mean: 0.6, sd: 0.1}}        # normal, truncated at 0 (negative draws redrawn)
    ttftS: {exponential: {mean: 0.6}}            # exponential

Every form describes a quantity >= 0. The lognormal's sigma is ``ln(p95 / median) / z``, with
``z = 1.6449`` the standard normal's 95th percentile, so that its median and p95 are the ones
given. :data:`DistributionField` is the pydantic type spec sections use; its errors name the
field they are in.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import PlainSerializer, PlainValidator

Form = Literal["fixed", "uniform", "lognormal", "normal", "exponential"]

Z95 = 1.6448536269514722  # standard normal 95th percentile
_FORMS = ("uniform", "lognormal", "normal", "exponential")
_EXAMPLE = (
    "expected a number >= 0 or a mapping with one key: {uniform: [lo, hi]}, "
    "{lognormal: {median: M, p95: P}}, {normal: {mean: M, sd: S}} or {exponential: {mean: M}}"
)


@dataclass(frozen=True, slots=True)
class Distribution:
    """A distribution of a quantity >= 0.

    ``a`` and ``b`` are the form's parameters as given: fixed (value, -), uniform (lo, hi),
    lognormal (median, p95), normal (mean, sd), exponential (mean, -). Build one with the
    class methods, which check them.
    """

    form: Form
    a: float
    b: float = 0.0
    # The lognormal's sigma, worked out once: sampling is on the simulator's per-request path.
    sigma: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        sigma = math.log(self.b / self.a) / Z95 if self.form == "lognormal" else 0.0
        object.__setattr__(self, "sigma", sigma)

    @classmethod
    def fixed(cls, value: float) -> Distribution:
        _check(value >= 0, f"a fixed value must be >= 0, got {value:g}")
        return cls("fixed", float(value))

    @classmethod
    def uniform(cls, lo: float, hi: float) -> Distribution:
        _check(0 <= lo <= hi, f"uniform needs 0 <= lo <= hi, got [{lo:g}, {hi:g}]")
        return cls("uniform", float(lo), float(hi))

    @classmethod
    def lognormal(cls, median: float, p95: float) -> Distribution:
        _check(
            0 < median <= p95,
            f"lognormal needs 0 < median <= p95, got median {median:g}, p95 {p95:g}",
        )
        return cls("lognormal", float(median), float(p95))

    @classmethod
    def normal(cls, mean: float, sd: float) -> Distribution:
        # mean >= 0 keeps at least half the draws >= 0, so redrawing negatives ends quickly.
        _check(mean >= 0 and sd >= 0, f"normal needs mean >= 0 and sd >= 0, got {mean:g}, {sd:g}")
        return cls("normal", float(mean), float(sd))

    @classmethod
    def exponential(cls, mean: float) -> Distribution:
        _check(mean > 0, f"exponential needs mean > 0, got {mean:g}")
        return cls("exponential", float(mean))

    def sample(self, rng: random.Random) -> float:
        """One draw, from ``rng`` only (a seeded generator gives the same draws)."""
        form = self.form
        if form == "fixed":
            return self.a
        if form == "lognormal":
            return self.a * math.exp(rng.gauss(0.0, self.sigma))
        if form == "uniform":
            return self.a + (self.b - self.a) * rng.random()
        if form == "exponential":
            return -self.a * math.log(1.0 - rng.random())
        if self.b == 0:
            return self.a
        while True:  # truncation at 0: each draw is kept with probability >= 1/2
            value = rng.gauss(self.a, self.b)
            if value >= 0:
                return value

    @property
    def mean(self) -> float:
        """The distribution's mean (for the normal, of the truncated distribution)."""
        form = self.form
        if form in ("fixed", "exponential"):
            return self.a
        if form == "uniform":
            return (self.a + self.b) / 2
        if form == "lognormal":
            return self.a * math.exp(self.sigma**2 / 2)
        if self.b == 0:
            return self.a
        # E[X | X >= 0] = mu + sd * phi(alpha) / (1 - Phi(alpha)), alpha = -mu / sd
        alpha = -self.a / self.b
        density = math.exp(-(alpha**2) / 2) / math.sqrt(2 * math.pi)
        tail = 0.5 * math.erfc(alpha / math.sqrt(2))
        return self.a + self.b * density / tail

    def describe(self) -> str:
        """The distribution as the spec writes it, such as ``lognormal(median 0.6, p95 1.5)``."""
        form = self.form
        if form == "fixed":
            return f"{self.a:g}"
        if form == "uniform":
            return f"uniform({self.a:g}, {self.b:g})"
        if form == "lognormal":
            return f"lognormal(median {self.a:g}, p95 {self.b:g})"
        if form == "normal":
            return f"normal(mean {self.a:g}, sd {self.b:g}, truncated at 0)"
        return f"exponential(mean {self.a:g})"

    def to_spec(self) -> float | dict[str, object]:
        """The YAML value :func:`parse_distribution` reads back as this distribution."""
        form = self.form
        if form == "fixed":
            return self.a
        if form == "uniform":
            return {"uniform": [self.a, self.b]}
        if form == "lognormal":
            return {"lognormal": {"median": self.a, "p95": self.b}}
        if form == "normal":
            return {"normal": {"mean": self.a, "sd": self.b}}
        return {"exponential": {"mean": self.a}}


def parse_distribution(value: object) -> Distribution:
    """The distribution a spec value describes; ``ValueError`` with the reason otherwise."""
    if isinstance(value, Distribution):
        return value
    if _is_number(value):
        return Distribution.fixed(float(value))  # type: ignore[arg-type]
    if not isinstance(value, Mapping) or len(value) != 1:
        raise ValueError(f"{_EXAMPLE}; got {value!r}")
    ((form, args),) = value.items()
    if form not in _FORMS:
        raise ValueError(f"unknown distribution {form!r}: {_EXAMPLE}")
    if form == "uniform":
        if not isinstance(args, list | tuple) or len(args) != 2 or not all(map(_is_number, args)):
            raise ValueError(f"uniform takes a list [lo, hi] of two numbers, got {args!r}")
        return Distribution.uniform(float(args[0]), float(args[1]))
    keys = {"lognormal": ("median", "p95"), "normal": ("mean", "sd"), "exponential": ("mean",)}[
        form
    ]
    shape = ", ".join(f"{key}: N" for key in keys)
    if not isinstance(args, Mapping) or set(args) != set(keys):
        raise ValueError(f"{form} takes {{{shape}}}, got {args!r}")
    numbers = [args[key] for key in keys]
    if not all(map(_is_number, numbers)):
        raise ValueError(f"{form} takes numbers {{{shape}}}, got {args!r}")
    floats = [float(number) for number in numbers]
    if form == "lognormal":
        return Distribution.lognormal(*floats)
    if form == "normal":
        return Distribution.normal(*floats)
    return Distribution.exponential(*floats)


DistributionField = Annotated[
    Distribution,
    PlainValidator(parse_distribution),
    PlainSerializer(Distribution.to_spec),
]
"""A spec field holding a distribution (a number or a one-key mapping, see the module)."""


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)
