"""What the demo's view shows, read from Prometheus text: the gateway's ``tiergate_*`` metrics
and the emulated engines' ``vllm:*`` gauges.

Parsing and the arithmetic on samples (rates, percentiles, cost) are pure functions over values,
so that the view and the final summary are computed the same way.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True, slots=True)
class GatewaySample:
    """One scrape of the gateway's ``/metrics``, at ``at`` (seconds, monotonic clock).

    ``requests`` counts client requests by serving tier and status; ``fallbacks`` moves by
    (from tier, to tier, reason); ``failed_attempts`` upstream attempts whose outcome was not
    ``ok``, by tier; ``tokens`` (input, output) by tier; ``up``, ``breaker`` and
    ``saturated`` the tier gauges.
    """

    at: float
    requests: Mapping[tuple[str, str], float] = field(default_factory=dict)
    fallbacks: Mapping[tuple[str, str, str], float] = field(default_factory=dict)
    failed_attempts: Mapping[str, float] = field(default_factory=dict)
    tokens: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    up: Mapping[str, float] = field(default_factory=dict)
    breaker: Mapping[str, float] = field(default_factory=dict)
    saturated: Mapping[str, float] = field(default_factory=dict)

    def served(self, tier: str) -> float:
        """Requests ``tier`` answered with 200."""
        return self.requests.get((tier, "200"), 0.0)

    def fallbacks_from(self, tier: str) -> float:
        return sum(n for (source, _, _), n in self.fallbacks.items() if source == tier)


def parse_gateway(text: str, at: float) -> GatewaySample:
    """The demo's figures out of one gateway ``/metrics`` page."""
    requests: dict[tuple[str, str], float] = defaultdict(float)
    fallbacks: dict[tuple[str, str, str], float] = {}
    failed: dict[str, float] = defaultdict(float)
    tokens: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    gauges: dict[str, dict[str, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            name = sample.name
            if name == "tiergate_requests_total":
                requests[(labels["tier"], labels["status"])] += sample.value
            elif name == "tiergate_fallbacks_total":
                key = (labels["from_tier"], labels["to_tier"], labels["reason"])
                fallbacks[key] = sample.value
            elif name == "tiergate_attempts_total" and labels["outcome"] != "ok":
                failed[labels["tier"]] += sample.value
            elif name == "tiergate_tokens_total" and labels["direction"] in ("input", "output"):
                index = 0 if labels["direction"] == "input" else 1
                tokens[labels["tier"]][index] += sample.value
            elif name in (
                "tiergate_tier_up",
                "tiergate_tier_breaker_state",
                "tiergate_tier_saturated",
            ):
                gauges[name][labels["tier"]] = sample.value
    return GatewaySample(
        at=at,
        requests=dict(requests),
        fallbacks=fallbacks,
        failed_attempts=dict(failed),
        tokens={tier: (pair[0], pair[1]) for tier, pair in tokens.items()},
        up=gauges["tiergate_tier_up"],
        breaker=gauges["tiergate_tier_breaker_state"],
        saturated=gauges["tiergate_tier_saturated"],
    )


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-quantile (0-1) of exact values, by the nearest-rank method; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def cost(tokens: tuple[float, float], price_per_1k: float | None) -> float:
    """USD for (input, output) tokens at one price per 1,000 tokens (the spec counts both)."""
    return (tokens[0] + tokens[1]) * (price_per_1k or 0.0) / 1000


def mean(values: Iterable[float | None]) -> float | None:
    """The mean of the values present, None when none is."""
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None
