"""Prometheus metrics of the gateway, in a registry owned by one app (no global registry).

Labels are bounded: tier and model labels only take names from the fleet spec (an unknown
requested model is counted as ``unknown``), status is an HTTP code, reasons a fixed set.
Key material never becomes a label.

With ``serve --workers N`` the supervisor gives every worker the same
``PROMETHEUS_MULTIPROC_DIR``: prometheus-client then keeps values in files there, and any
worker's ``/metrics`` reports the sum over all workers, so a scrape that lands on any worker
sees the same counters. Tier state gauges keep the most severe worker's view.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from tiergate.providers.base import Usage
from tiergate.telemetry.governance_metrics import GovernanceMetrics

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Seconds. Includes 2 s: the seed's TTFT objective is P95 < 2 s.
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 20.0, 30.0,
    60.0, 120.0, 300.0,
)  # fmt: skip

BREAKER_STATE_VALUES = {"closed": 0, "open": 1, "half_open": 2}


class GatewayMetrics:
    """Every metric the gateway exposes, registered in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        # Read when the app is built (never at import): set by the supervisor of --workers.
        self._multiprocess_dir = os.environ.get(MULTIPROCESS_ENV)
        r = self.registry
        self.requests = Counter(
            "tiergate_requests",
            "Client requests by requested model, serving tier and HTTP status.",
            ["model", "tier", "status"],
            registry=r,
        )
        self.attempts = Counter(
            "tiergate_attempts",
            "Upstream attempts by tier and outcome (ok or the fallback reason).",
            ["tier", "outcome"],
            registry=r,
        )
        self.fallbacks = Counter(
            "tiergate_fallbacks",
            "Moves from one tier to the next, by reason (skips included).",
            ["from_tier", "to_tier", "reason"],
            registry=r,
        )
        self.request_duration = Histogram(
            "tiergate_request_duration_seconds",
            "Time from request received to response complete.",
            ["model", "tier"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "tiergate_time_to_first_token_seconds",
            "Time from request received to the first streamed chunk sent to the client.",
            ["model", "tier"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_duration = Histogram(
            "tiergate_upstream_duration_seconds",
            "Duration of each upstream attempt until its response (or first chunk) or failure.",
            ["tier"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "tiergate_requests_in_flight",
            "Client requests being served.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.tier_up = Gauge(
            "tiergate_tier_up",
            "1 when the tier passes its health checks.",
            ["tier"],
            registry=r,
            multiprocess_mode="livemin",
        )
        self.breaker_state = Gauge(
            "tiergate_tier_breaker_state",
            "Error-rate breaker: 0 closed, 1 open, 2 half-open.",
            ["tier"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.saturated = Gauge(
            "tiergate_tier_saturated",
            "1 while the tier's engines report saturation (spillover active).",
            ["tier"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.tokens = Counter(
            "tiergate_tokens",
            "Tokens by direction, requested model and serving tier: input (every prompt token) "
            "and output; cache_read and cache_write are the parts of input served from and "
            "written to the provider's prompt cache.",
            ["direction", "model", "tier"],
            registry=r,
        )

        self.governance = GovernanceMetrics(r)

        # Label children cached by label values: labels() takes a lock and builds keys on every
        # call, which shows in the request path's profile. The label sets are bounded.
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, key: tuple[Any, ...], make: Any) -> Any:
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = make()
        return child

    def request_done(self, model: str, tier: str, status: int, seconds: float) -> None:
        """Count a finished client request and its duration."""
        count, duration = self._child(
            ("request", model, tier, status),
            lambda: (
                self.requests.labels(model, tier, str(status)),
                self.request_duration.labels(model, tier),
            ),
        )
        count.inc()
        duration.observe(seconds)

    def attempt_done(self, tier: str, outcome: str, seconds: float | None) -> None:
        """Count an upstream attempt (``seconds`` is None for failures after the commit)."""
        count, duration = self._child(
            ("attempt", tier, outcome),
            lambda: (self.attempts.labels(tier, outcome), self.upstream_duration.labels(tier)),
        )
        count.inc()
        if seconds is not None:
            duration.observe(seconds)

    def fallback(self, source: str, target: str, reason: str) -> None:
        self._child(
            ("fallback", source, target, reason),
            lambda: self.fallbacks.labels(source, target, reason),
        ).inc()

    def first_token(self, model: str, tier: str, seconds: float) -> None:
        self._child(("ttft", model, tier), lambda: self.ttft.labels(model, tier)).observe(seconds)

    def tokens_used(self, model: str, tier: str, usage: Usage) -> None:
        """Add a request's tokens."""
        source, generated, read, written = self._child(
            ("tokens", model, tier),
            lambda: tuple(
                self.tokens.labels(direction, model, tier)
                for direction in ("input", "output", "cache_read", "cache_write")
            ),
        )
        source.inc(usage.prompt)
        generated.inc(usage.completion)
        if usage.cache_read:
            read.inc(usage.cache_read)
        if usage.cache_write:
            written.inc(usage.cache_write)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format (all workers' values under --workers)."""
        if self._multiprocess_dir is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        # prometheus-client ships this constructor without annotations.
        MultiProcessCollector(merged, self._multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(merged)
