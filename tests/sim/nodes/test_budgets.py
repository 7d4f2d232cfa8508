"""Disruption budgets with Karpenter's semantics, against counts worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime

from tiergate.sim.nodes.budgets import UNLIMITED, BudgetRule, allowed_disruptions
from tiergate.spec.nodepools import Budget, Disruption


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# The seed's budgets: 10% on weekdays from 09:00 for 9 h, 50% on weekday evenings from 18:00
# for 15 h (Friday 18:00 + 15 h = Saturday 09:00).
SEED = tuple(
    BudgetRule.from_spec(b)
    for b in Disruption.model_validate(
        {
            "budgets": [
                {"nodes": "10%", "schedule": "0 9 * * 1-5", "duration": "9h"},
                {"nodes": "50%", "schedule": "0 18 * * 1-5", "duration": "15h"},
            ]
        }
    ).budgets
)


def allowed(when: str, *, total: int = 25, disrupting: int = 0, reason: str = "Empty") -> int:
    return allowed_disruptions(
        SEED, total_nodes=total, disrupting=disrupting, reason=reason, now_utc=at(when)
    )


def test_seed_budgets_on_tuesday_morning_evening_and_saturday() -> None:
    # 2026-12-08 is a Tuesday. 10:00: only the 10% window: roundup(25 * 0.10) = roundup(2.5) = 3.
    assert allowed("2026-12-08T10:00") == 3
    # 19:00: only the 50% window: roundup(25 * 0.5) = roundup(12.5) = 13.
    assert allowed("2026-12-08T19:00") == 13
    # Saturday 12:00: the Friday-evening window closed at 09:00; no budget active, and the
    # default 10% is replaced by the given ones, so nothing limits disruption.
    assert allowed("2026-12-12T12:00") == UNLIMITED
    # Saturday 08:59 is still inside Friday's 18:00 + 15 h window.
    assert allowed("2026-12-12T08:59") == 13


def test_windows_open_and_close_exactly_at_their_edges() -> None:
    # Tuesday 09:00 opens the 10% window; the 50% window (Monday 18:00 + 15 h) closes at 09:00.
    assert allowed("2026-12-08T08:59:59") == 13
    assert allowed("2026-12-08T09:00") == 3
    # 18:00: the 10% window ([09:00, 18:00)) is closed and the 50% one open.
    assert allowed("2026-12-08T17:59:59") == 3
    assert allowed("2026-12-08T18:00") == 13


def test_deleting_and_not_ready_nodes_use_up_the_budget() -> None:
    # 3 allowed at Tuesday 10:00, 2 already disrupting: 1 more; 5 disrupting: none (not -2).
    assert allowed("2026-12-08T10:00", disrupting=2) == 1
    assert allowed("2026-12-08T10:00", disrupting=5) == 0


def test_minimum_over_active_budgets_and_reason_filters() -> None:
    rules = (
        BudgetRule.from_spec(Budget(nodes="50%")),
        BudgetRule.from_spec(Budget.model_validate({"nodes": 1, "reasons": ["Underutilized"]})),
    )
    now = at("2026-12-08T10:00")
    # Empty: only the 50% budget applies: roundup(10 * 0.5) = 5.
    assert (
        allowed_disruptions(rules, total_nodes=10, disrupting=0, reason="Empty", now_utc=now) == 5
    )
    # Underutilized: min(5, 1) = 1.
    underutilized = allowed_disruptions(
        rules, total_nodes=10, disrupting=0, reason="Underutilized", now_utc=now
    )
    assert underutilized == 1


def test_default_budget_is_ten_percent_rounded_up() -> None:
    rules = tuple(BudgetRule.from_spec(b) for b in Disruption().budgets)
    now = at("2026-12-12T12:00")
    # roundup(1 * 0.1) = 1: a lone node can always go; roundup(11 * 0.1) = 2; 0 nodes: 0.
    assert allowed_disruptions(rules, total_nodes=1, disrupting=0, reason="Empty", now_utc=now) == 1
    assert (
        allowed_disruptions(rules, total_nodes=11, disrupting=0, reason="Empty", now_utc=now) == 2
    )
    assert allowed_disruptions(rules, total_nodes=0, disrupting=0, reason="Empty", now_utc=now) == 0
