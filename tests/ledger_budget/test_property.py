"""Whatever the order of reservations, settlements and releases, and however time moves on,
no budget's window ever holds more than its limit, spent or reserved."""

from __future__ import annotations

import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ledger_budget.conftest import KEY, TEAM, ts
from tiergate.ledger.budget import Budget, BudgetBook, LocalBudgetBook, Reservation, Window
from tiergate.ledger.budget_redis import RedisBudgetBook

START = ts(2024, 2, 27, 20)

Step = tuple[str, float, float]
steps = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), st.floats(0, 0.6), st.just(0.0)),
        st.tuples(st.just("settle"), st.floats(0, 1), st.floats(0, 1)),  # which one, how much
        st.tuples(st.just("release"), st.floats(0, 1), st.just(0.0)),
        st.tuples(st.just("wait"), st.floats(0, 30 * 3600), st.just(0.0)),
    ),
    max_size=60,
)
limits = st.tuples(st.floats(0, 2), st.floats(0, 3))


async def run(book: BudgetBook, key_limit: float, team_limit: float, script: list[Step]) -> None:
    budgets = [Budget(KEY, key_limit, Window.rolling(2)), Budget(TEAM, team_limit)]
    now = START
    open_: list[Reservation] = []
    for op, a, b in script:
        if op == "reserve":
            result = await book.reserve(budgets, a, now)
            if isinstance(result, Reservation):
                open_.append(result)
        elif op == "wait":
            now += a
        elif open_:
            reservation = open_.pop(int(a * (len(open_) - 1)))
            if op == "settle":
                await book.settle(reservation, reservation.amount_usd * b, now)
            else:
                await book.release(reservation)
        for budget in budgets:
            spent, reserved = await book.status(budget, now)
            assert spent + reserved <= budget.limit_usd + 1e-9, (budget, spent, reserved)


@given(limits, steps)
async def test_local_book_never_overspends(limits: tuple[float, float], script: list[Step]) -> None:
    await run(LocalBudgetBook(), *limits, script)


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limits, steps)
async def test_redis_book_never_overspends(
    redis_url: str, limits: tuple[float, float], script: list[Step]
) -> None:
    # One Redis for every example: each gets keys of its own.
    book = RedisBudgetBook.from_url(redis_url, timeout_s=5.0, prefix=f"t{uuid.uuid4().hex}:")
    try:
        await run(book, *limits, script)
    finally:
        await book.aclose()
