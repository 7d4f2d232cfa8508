"""Metrics of keys, budgets, rate limits and the ledger (registered with the gateway's)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class GovernanceMetrics:
    """Labels are bounded: scopes are key ids, teams and projects the ledger knows."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.refusals = Counter(
            "tiergate_governance_refusals",
            "Requests refused before any upstream: reason (missing_api_key, invalid_api_key, "
            "model_not_allowed, budget_exceeded, rate_limit_exceeded) and scope.",
            ["reason", "scope"],
            registry=registry,
        )
        self.unchecked = Counter(
            "tiergate_governance_unchecked",
            "Requests let through unchecked while the limits store was down (onStoreDown: open).",
            registry=registry,
        )
        self.budget_used = Gauge(
            "tiergate_budget_used_ratio",
            "Spent plus reserved over the limit, per budget scope, as of its last admission.",
            ["scope"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.soft_exceeded = Counter(
            "tiergate_budget_soft_limit_exceeded",
            "Requests served past a budget's soft limit, by scope.",
            ["scope"],
            registry=registry,
        )
        self.ledger_available = Gauge(
            "tiergate_ledger_available",
            "1 while the ledger store accepts writes.",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.ledger_queued = Gauge(
            "tiergate_ledger_queued_records",
            "Records waiting for the next group commit.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.ledger_dropped = Counter(
            "tiergate_ledger_dropped_records",
            "Records lost because the store's queue was full (the store was down too long).",
            registry=registry,
        )
        self._dropped_seen = 0

    def ledger(self, *, available: bool, queued: int, dropped: int) -> None:
        """Show a store's state (called when metrics are scraped)."""
        self.ledger_available.set(1 if available else 0)
        self.ledger_queued.set(queued)
        if dropped > self._dropped_seen:
            self.ledger_dropped.inc(dropped - self._dropped_seen)
        self._dropped_seen = dropped
