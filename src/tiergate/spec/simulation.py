"""The ``simulation:`` section of the fleet spec: what ``tiergate simulate`` needs beyond the
fleet itself (managed-tier behaviour, faults, the synthetic workload's shape, the SLO).

Example::

    simulation:
      managed:
        bedrock-sonnet:
          ttftS: {lognormal: {median: 0.6, p95: 1.5}}
          outputTokensPerS: 60
          quota: {tokensPerMinute: 2000000}
          priceSource: bedrock
      faults:
        - {kind: outage, tier: cloud, at: 2h, duration: 10m}
        - {kind: slowdown, tier: onprem, at: 1d, duration: 1h, factor: 1.5}
        - {kind: errors, tier: cloud, at: 3h, duration: 5m, rate: 0.2, status: 503}
        - {kind: spotStorm, pool: gpu-spot, at: 2d, duration: 30m, interruptionsPerInstanceHour: 2}
        - kind: randomOutage
          tier: cloud
          meanTimeBetweenS: 86400
          durationS: {exponential: {mean: 300}}
      workload: {profileFile: week.csv}
      slo: {ttftP95S: 2.0}

Durations (``at``, ``duration``) are seconds or strings such as ``"30s"``, ``"5m"``, ``"2h"``,
``"1d"``, ``"1h30m"``. Distributions are written as in :mod:`tiergate.sim.distributions`.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

from pydantic import Field, PlainSerializer, PlainValidator, model_validator

from tiergate.sim.distributions import DistributionField
from tiergate.sim.synthetic import normalise_profile
from tiergate.spec.base import SpecModel

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")


def parse_duration(value: object) -> float:
    """Seconds from a number (seconds) or a string such as ``"90s"``, ``"5m"``, ``"1h30m"``,
    ``"1d"``; ``ValueError`` otherwise. Durations are >= 0."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION.fullmatch(value.strip()):
        seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(value.strip()))
    else:
        raise ValueError(
            f"expected seconds or a duration such as '30s', '5m', '2h', '1d', got {value!r}"
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration must be >= 0, got {value!r}")
    return seconds


DurationField = Annotated[float, PlainValidator(parse_duration), PlainSerializer(float)]
"""Seconds, written as a number or a duration string."""

StatusCode = Annotated[int, Field(ge=100, le=599)]


class ManagedQuota(SpecModel):
    """Bedrock on-demand quotas of one model in one Region, per minute. Unset: not enforced.

    Defaults vary by model, Region and account (AWS Service Quotas console), so none is
    assumed; AWS has also been removing RPM quotas in favour of tokens per minute alone.
    ``tokensPerMinute`` counts input + output tokens (output x the model's burndown rate).
    """

    requests_per_minute: int | None = Field(default=None, gt=0)
    tokens_per_minute: int | None = Field(default=None, gt=0)


class ManagedTierSimulation(SpecModel):
    """How a managed (Bedrock) tier behaves in the simulator. Unset fields take the model's
    defaults (tiergate.sim.managed.MODEL_PROFILES: assumed latencies, AWS burndown rates)."""

    ttft_s: DistributionField | None = None
    output_tokens_per_s: DistributionField | None = None
    quota: ManagedQuota = Field(default_factory=ManagedQuota)
    # Output tokens counted against tokensPerMinute per token generated (AWS: 5 for Claude 4).
    output_burndown: float | None = Field(default=None, gt=0)
    # Which of the price table's sources to use (e.g. "bedrock" or "alternate" for Qwen3-32B);
    # the model's first source by default; the tier's models[].pricing wins over both.
    price_source: str | None = Field(default=None, min_length=1)


class _Window(SpecModel):
    at: DurationField
    duration: DurationField

    @model_validator(mode="after")
    def _positive(self) -> _Window:
        if self.duration <= 0:
            raise ValueError("duration must be > 0")
        return self


class OutageFault(_Window):
    """The tier's engines refuse connections and fail health checks in the window."""

    kind: Literal["outage"]
    tier: str = Field(min_length=1)


class SlowdownFault(_Window):
    """The tier's step times are multiplied by ``factor`` in the window."""

    kind: Literal["slowdown"]
    tier: str = Field(min_length=1)
    factor: float = Field(ge=1)


class ErrorsFault(_Window):
    """The tier answers ``status`` to a share ``rate`` of its requests in the window (503 by
    default: Bedrock's ServiceUnavailableException, vLLM's overloaded answer)."""

    kind: Literal["errors"]
    tier: str = Field(min_length=1)
    rate: float = Field(ge=0, le=1)
    status: StatusCode = 503


class SpotStormFault(_Window):
    """Spot instances of ``pool`` are interrupted at this rate per instance-hour in the window
    (each with EC2's 2-minute notice), on top of the pool's usual rate."""

    kind: Literal["spotStorm"]
    pool: str = Field(min_length=1)
    interruptions_per_instance_hour: float = Field(gt=0)


class RandomOutageFault(SpecModel):
    """Outages of ``tier`` at random: up times exponential with mean ``meanTimeBetweenS``
    (from the end of one outage to the start of the next), outage lengths from ``durationS``."""

    kind: Literal["randomOutage"]
    tier: str = Field(min_length=1)
    mean_time_between_s: float = Field(gt=0)
    duration_s: DistributionField


Fault = Annotated[
    OutageFault | SlowdownFault | ErrorsFault | SpotStormFault | RandomOutageFault,
    Field(discriminator="kind"),
]


class WorkloadShape(SpecModel):
    """The synthetic week's hour-of-week profile: 168 relative weights (hour 0 is Monday
    00:00 UTC), inline or in a file; neither: the documented business-hours default
    (tiergate.sim.synthetic.hour_of_week_profile). Weights are scaled to mean 1."""

    profile: list[float] | None = None
    profile_file: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_source(self) -> WorkloadShape:
        if self.profile is not None and self.profile_file is not None:
            raise ValueError("give profile or profileFile, not both")
        if self.profile is not None:
            normalise_profile(self.profile)  # its ValueError names the problem
        return self


class Slo(SpecModel):
    """The fleet's SLO: by default the seed's TTFT p95 <= 2 s.

    A request meets it when its TTFT is at most ``ttftP95S`` (and its mean inter-token
    latency at most ``itlP95S`` when set); the run meets it when the share of requests that
    do reaches ``attainmentTarget`` (0.95: the "p95" of the seed's target).
    """

    ttft_p95_s: float = Field(default=2.0, gt=0)
    itl_p95_s: float | None = Field(default=None, gt=0)
    attainment_target: float = Field(default=0.95, gt=0, le=1)


class Simulation(SpecModel):
    """The top-level ``simulation:`` section."""

    managed: dict[str, ManagedTierSimulation] = Field(default_factory=dict)
    faults: list[Fault] = Field(default_factory=list)
    workload: WorkloadShape = Field(default_factory=WorkloadShape)
    slo: Slo = Field(default_factory=Slo)
