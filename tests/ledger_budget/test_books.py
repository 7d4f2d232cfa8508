"""Budget admission, asked of both books: the local one and the one shared through Redis."""

from __future__ import annotations

import asyncio
import random

import pytest

from tests.ledger_budget.conftest import KEY, PROJECT, TEAM, BookFactory, Ledger, ts
from tiergate.ledger.budget import Budget, Refusal, Reservation, Window
from tiergate.ledger.records import Scope, ScopeKind

NOW = ts(2024, 11, 15, 12)


def admitted(result: Reservation | Refusal) -> Reservation:
    assert isinstance(result, Reservation), f"refused: {result}"
    return result


def refused(result: Reservation | Refusal) -> Refusal:
    assert isinstance(result, Refusal), "admitted, but should have been refused"
    return result


async def test_a_limit_fitting_exactly_n_admits_n_and_refuses_the_next(
    books: BookFactory,
) -> None:
    book = books()
    budget = Budget(KEY, 1.0)
    held = [admitted(await book.reserve([budget], 0.02, NOW)) for _ in range(50)]
    refusal = refused(await book.reserve([budget], 0.02, NOW))
    assert (refusal.spent_usd, refusal.reserved_usd, refusal.limit_usd) == (0.0, 1.0, 1.0)
    assert refusal.reset_at == ts(2024, 12, 1)
    assert refusal.budget == budget
    assert "resets at 2024-12-01T00:00:00Z" in str(refusal)
    for reservation in held:
        await book.settle(reservation, 0.02, NOW)
    assert await book.status(budget, NOW) == (1.0, 0.0)
    # At spent == limit nothing more is admitted: not a micro-USD, not even a free request.
    refused(await book.reserve([budget], 0.000001, NOW))
    refused(await book.reserve([budget], 0.0, NOW))


async def test_float_noise_does_not_cost_an_admission(books: BookFactory) -> None:
    book = books()
    budget = Budget(KEY, 0.3)
    for _ in range(3):
        admitted(await book.reserve([budget], 0.1, NOW))
    refused(await book.reserve([budget], 0.000001, NOW))


async def test_200_concurrent_requests_against_room_for_50(books: BookFactory) -> None:
    ledger = Ledger()
    book = books(ledger.spend)
    budget = Budget(KEY, 50 * 0.037)
    results = await asyncio.gather(*(book.reserve([budget], 0.037, NOW) for _ in range(200)))
    held = [r for r in results if isinstance(r, Reservation)]
    assert len(held) == 50
    assert len({r.id for r in held}) == 50
    assert all(isinstance(r, Refusal) for r in results if r not in held)
    rng = random.Random(7)
    await asyncio.gather(*(book.settle(r, rng.uniform(0, 0.037), NOW) for r in held))
    spent, reserved = await book.status(budget, NOW)
    assert reserved == 0.0
    assert spent <= budget.limit_usd
    # The budget was seeded once, however many first uses raced.
    assert ledger.asked == [(KEY, ts(2024, 11, 1))]


async def test_a_key_budget_counts_inside_its_team_and_the_tighter_wins(
    books: BookFactory,
) -> None:
    book = books()
    team = Budget(TEAM, 2.5)
    keys = [Budget(Scope(ScopeKind.KEY, f"k{n}"), 1.0) for n in range(4)]
    project = Budget(PROJECT, 100.0)
    for key in keys[:2]:
        for _ in range(2):
            await book.settle(
                admitted(await book.reserve([key, team, project], 0.5, NOW)), 0.5, NOW
            )
        # The key's own budget is the tighter one here.
        assert refused(await book.reserve([key, team, project], 0.5, NOW)).budget == key
    assert admitted(await book.reserve([keys[2], team, project], 0.5, NOW))
    # Now the team's is: keys[3] has spent nothing of its own.
    refusal = refused(await book.reserve([keys[3], team, project], 0.5, NOW))
    assert refusal.budget == team
    assert (refusal.spent_usd, refusal.reserved_usd) == (2.0, 0.5)
    assert await book.status(project, NOW) == (2.0, 0.5)


async def test_refusal_reports_the_budget_that_resets_last(books: BookFactory) -> None:
    book = books()
    daily = Budget(KEY, 1.0, Window.rolling(1))
    monthly = Budget(TEAM, 1.0)
    refusal = refused(await book.reserve([daily, monthly], 2.0, NOW))
    assert refusal.budget == monthly
    assert refusal.reset_at == ts(2024, 12, 1)


async def test_spend_in_november_does_not_count_in_december(books: BookFactory) -> None:
    book = books()
    budget = Budget(KEY, 1.0)
    late = ts(2024, 11, 30, 23, 59, 59)
    reservation = admitted(await book.reserve([budget], 1.0, late))
    assert refused(await book.reserve([budget], 0.5, late)).reset_at == ts(2024, 12, 1)
    # Settled after midnight, it still counts in November, where it was admitted.
    await book.settle(reservation, 0.9, ts(2024, 12, 1, 0, 0, 5))
    assert await book.status(budget, late) == (0.9, 0.0)
    assert await book.status(budget, ts(2024, 12, 1)) == (0.0, 0.0)
    admitted(await book.reserve([budget], 1.0, ts(2024, 12, 1)))


async def test_rolling_window_sums_the_last_n_days(books: BookFactory) -> None:
    book = books()
    week = Budget(KEY, 10.0, Window.rolling(7))
    for day, usd in [(1, 1.0), (3, 2.0), (7, 4.0)]:
        at = ts(2024, 3, day, 10)
        await book.settle(admitted(await book.reserve([week], usd, at)), usd, at)
    assert (await book.status(week, ts(2024, 3, 7, 23)))[0] == 7.0
    assert (await book.status(week, ts(2024, 3, 8)))[0] == 6.0  # March 1 left
    assert (await book.status(week, ts(2024, 3, 10)))[0] == 4.0  # March 3 left
    assert (await book.status(week, ts(2024, 3, 14)))[0] == 0.0


async def test_a_budget_added_mid_month_ignores_earlier_spend(books: BookFactory) -> None:
    ledger = Ledger()
    ledger.add(ts(2024, 11, 3), KEY, 5.0)
    ledger.add(ts(2024, 11, 16), KEY, 2.0)
    book = books(ledger.spend)
    since = ts(2024, 11, 15, 9)
    added_later = Budget(KEY, 3.0, since=since)
    assert await book.status(added_later, NOW) == (2.0, 0.0)
    admitted(await book.reserve([added_later], 1.0, NOW))
    refused(await book.reserve([added_later], 0.000001, NOW))
    # The same scope without a cut sees the whole month, in a count of its own.
    assert await book.status(Budget(KEY, 3.0), NOW) == (7.0, 0.0)
    # Next month the cut is behind the window: the budget is an ordinary one.
    assert await book.status(added_later, ts(2024, 12, 2)) == (0.0, 0.0)


async def test_a_restart_remembers_the_months_spend_from_the_ledger(books: BookFactory) -> None:
    ledger = Ledger()
    ledger.add(ts(2024, 10, 31, 23), KEY, 50.0)  # last month: not counted
    ledger.add(ts(2024, 11, 2), KEY, 0.6)
    ledger.add(ts(2024, 11, 14), KEY, 0.3)
    ledger.add(ts(2024, 11, 14), TEAM, 9.0)  # another scope
    book = books(ledger.spend)
    budget = Budget(KEY, 1.0)
    refused(await book.reserve([budget], 0.2, NOW))
    admitted(await book.reserve([budget], 0.1, NOW))
    assert await book.status(budget, NOW) == (0.9, 0.1)


async def test_rolling_days_are_seeded_day_by_day(books: BookFactory) -> None:
    ledger = Ledger()
    for day, usd in [(5, 8.0), (9, 1.0), (12, 2.0), (15, 0.5)]:
        ledger.add(ts(2024, 11, day, 8), KEY, usd)
    book = books(ledger.spend)
    week = Budget(KEY, 10.0, Window.rolling(7))
    assert (await book.status(week, NOW))[0] == 3.5
    # The 9th was seeded as a day of its own: it leaves the window on the 16th.
    assert (await book.status(week, ts(2024, 11, 16, 1)))[0] == 2.5


async def test_cheapest_action_is_carried_to_the_gateway(books: BookFactory) -> None:
    book = books()
    budget = Budget(KEY, 1.0, action="cheapest", soft_fraction=0.5)
    reservation = admitted(await book.reserve([budget], 0.6, NOW))
    assert reservation.statuses[0].reserved_usd == 0.6
    assert not reservation.statuses[0].soft_exceeded
    refusal = refused(await book.reserve([budget], 0.6, NOW))
    assert refusal.action == "cheapest"
    await book.settle(reservation, 0.6, NOW)
    status = admitted(await book.reserve([budget], 0.1, NOW)).statuses[0]
    assert status.spent_usd == 0.6
    assert status.soft_exceeded


async def test_release_frees_the_amount_and_settling_twice_changes_nothing(
    books: BookFactory,
) -> None:
    book = books()
    budget = Budget(KEY, 1.0)
    whole = admitted(await book.reserve([budget], 1.0, NOW))
    refused(await book.reserve([budget], 0.01, NOW))
    await book.release(whole)
    await book.release(whole)
    assert await book.status(budget, NOW) == (0.0, 0.0)
    reservation = admitted(await book.reserve([budget], 1.0, NOW))
    await book.settle(reservation, 0.4, NOW)
    await book.settle(reservation, 0.4, NOW)
    await book.release(reservation)
    assert await book.status(budget, NOW) == (0.4, 0.0)


async def test_a_free_request_is_admitted_below_the_limit(books: BookFactory) -> None:
    book = books()
    budget = Budget(KEY, 1.0)
    free = admitted(await book.reserve([budget], 0.0, NOW))
    await book.settle(free, 0.0, NOW)
    paid = admitted(await book.reserve([budget], 1.0, NOW))
    await book.release(paid)
    assert await book.status(budget, NOW) == (0.0, 0.0)


async def test_a_request_without_budgets_is_admitted(books: BookFactory) -> None:
    book = books()
    reservation = admitted(await book.reserve([], 5.0, NOW))
    await book.settle(reservation, 5.0, NOW)
    assert reservation.statuses == ()


@pytest.mark.parametrize("amount", [-1.0, float("nan")])
async def test_a_negative_amount_is_an_error(books: BookFactory, amount: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        await books().reserve([Budget(KEY, 1.0)], amount, NOW)
