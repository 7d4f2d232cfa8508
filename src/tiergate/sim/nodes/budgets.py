"""Karpenter's disruption budgets, as ``GetAllowedDisruptionsByReason`` computes them.

Rules (kubernetes-sigs/karpenter ``pkg/apis/v1/nodepool.go``; Karpenter docs, concepts/
disruption): a budget without ``schedule`` is always active; a scheduled one is active from each
fire time (cron, UTC) for ``duration``, i.e. in ``[fire, fire + duration)``; an inactive budget
contributes no limit (``math.MaxInt32``); a budget whose ``reasons`` omit the disruption's reason
does not apply to it; the allowed count is the minimum over the applicable active budgets of
roundup(nodes * percentage) or the integer, less the nodes already disrupting (deleting or
NotReady), and never below 0. Spot interruptions and expiry are not governed by budgets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from tiergate.sim.cron import Cron, parse_cron
from tiergate.spec.nodepools import Budget

UNLIMITED = 2**31 - 1  # Karpenter's math.MaxInt32 for "no limit"


@dataclass(frozen=True, slots=True)
class BudgetRule:
    """A resolved budget: ``count`` or ``percent`` (one is ``None``), schedule and window."""

    count: int | None
    percent: int | None
    schedule: Cron | None = None
    duration: timedelta = timedelta(0)
    reasons: frozenset[str] | None = None  # None: every reason

    @classmethod
    def from_spec(cls, budget: Budget) -> BudgetRule:
        nodes = budget.nodes
        count, percent = (
            (None, int(nodes[:-1]))
            if isinstance(nodes, str) and nodes.endswith("%")
            else (int(nodes), None)
        )
        schedule = None if budget.schedule is None else parse_cron(budget.schedule)
        duration = timedelta(seconds=budget.duration_s or 0.0)
        reasons = None if budget.reasons is None else frozenset(budget.reasons)
        return cls(count, percent, schedule, duration, reasons)


def budget_active(rule: BudgetRule, now_utc: datetime) -> bool:
    """Whether ``rule`` limits disruption at ``now_utc``: unscheduled ones always do; a
    scheduled one in ``[fire, fire + duration)`` (Karpenter: the schedule's next hit after
    ``now - duration`` is not after ``now``)."""
    if rule.schedule is None:
        return True
    return rule.schedule.previous_fire(now_utc, within=rule.duration) is not None


def budget_nodes(rule: BudgetRule, total_nodes: int) -> int:
    """The nodes ``rule`` lets go: the integer, or the percentage of ``total_nodes`` rounded up
    (Kubernetes' ``GetScaledValueFromIntOrPercent`` with roundUp)."""
    if rule.percent is None:
        return rule.count or 0
    return -(-total_nodes * rule.percent // 100)


def allowed_disruptions(
    rules: tuple[BudgetRule, ...],
    *,
    total_nodes: int,
    disrupting: int,
    reason: str,
    now_utc: datetime,
) -> int:
    """How many more of a pool's nodes may be disrupted for ``reason`` now.

    ``total_nodes`` counts the pool's initialized nodes, ``disrupting`` those of them that are
    deleting or NotReady (Karpenter's ``BuildDisruptionBudgetMapping``).
    """
    allowed = UNLIMITED
    for rule in rules:
        if rule.reasons is not None and reason not in rule.reasons:
            continue
        if budget_active(rule, now_utc):
            allowed = min(allowed, budget_nodes(rule, total_nodes))
    return max(allowed - disrupting, 0)
