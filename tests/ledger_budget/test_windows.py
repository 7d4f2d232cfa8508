"""Money in micro-USD and the budget windows: calendar months and rolling days, in UTC."""

from __future__ import annotations

import pytest

from tests.ledger_budget.conftest import KEY, ts
from tiergate.ledger.budget import (
    Budget,
    Window,
    counters,
    micros_down,
    micros_nearest,
    micros_up,
)

DAY = 86_400.0


def test_reservations_round_up_actual_costs_to_nearest_limits_down() -> None:
    assert micros_up(0.0000011) == 2
    assert micros_nearest(0.0000011) == 1
    assert micros_nearest(0.0000015) == 2
    assert micros_down(0.0000019) == 1
    # Float noise is not a micro-USD: 0.1 + 0.2 and 3 x 0.0001 are what they look like.
    assert micros_up(0.1 + 0.2) == micros_down(0.3) == 300_000
    assert micros_up(3 * 0.0001) == 300
    assert micros_up(0.0) == 0


@pytest.mark.parametrize("bad", [-0.01, float("nan"), float("inf")])
def test_money_must_be_finite_and_not_negative(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        micros_up(bad)


def test_month_bucket_and_reset_across_new_year() -> None:
    month = Window.month()
    bucket = month.bucket(ts(2024, 12, 31, 23, 59, 59))
    assert bucket.id == "2024-12"
    assert (bucket.start, bucket.end) == (ts(2024, 12, 1), ts(2025, 1, 1))
    assert month.reset_at(ts(2024, 12, 31, 23, 59, 59)) == ts(2025, 1, 1)
    assert month.bucket(ts(2025, 1, 1)).id == "2025-01"
    assert month.start(ts(2025, 1, 1)) == ts(2025, 1, 1)


def test_february_of_a_leap_year_ends_after_the_29th() -> None:
    month = Window.month()
    assert month.bucket(ts(2024, 2, 29, 12)).id == "2024-02"
    assert month.reset_at(ts(2024, 2, 29, 12)) == ts(2024, 3, 1)
    assert month.reset_at(ts(2023, 2, 28, 23, 59)) == ts(2023, 3, 1)
    assert month.bucket(ts(2023, 3, 1)).id == "2023-03"


def test_rolling_seven_days_is_today_and_the_six_days_before() -> None:
    week = Window.rolling(7)
    now = ts(2024, 3, 2, 15, 30)
    ids = [b.id for b in week.buckets(now)]
    assert ids == [
        "2024-02-25",
        "2024-02-26",
        "2024-02-27",
        "2024-02-28",
        "2024-02-29",
        "2024-03-01",
        "2024-03-02",
    ]
    assert week.start(now) == ts(2024, 2, 25)
    # The oldest day leaves at the next UTC midnight.
    assert week.reset_at(now) == ts(2024, 3, 3)
    assert week.bucket(ts(2024, 3, 3) - 0.001).id == "2024-03-02"
    assert week.bucket(ts(2024, 3, 3)).id == "2024-03-03"
    assert str(week) == "7d"
    assert str(Window.month()) == "month"


def test_window_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="at least 1 day"):
        Window.rolling(0)
    with pytest.raises(ValueError, match="soft_fraction"):
        Budget(KEY, 10.0, soft_fraction=0.0)
    with pytest.raises(ValueError, match="action"):
        Budget(KEY, 10.0, action="shrug")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        Budget(KEY, -1.0)


def test_since_cuts_its_bucket_and_drops_the_buckets_before_it() -> None:
    now = ts(2024, 11, 20, 12)
    since = ts(2024, 11, 18, 6)
    cut = counters(Budget(KEY, 1.0, Window.rolling(7), since=since), now)
    assert [(c.start, c.end) for c in cut] == [
        (since, ts(2024, 11, 19)),
        (ts(2024, 11, 19), ts(2024, 11, 20)),
        (ts(2024, 11, 20), ts(2024, 11, 21)),
    ]
    plain = counters(Budget(KEY, 1.0, Window.rolling(7)), now)
    # Days after the cut share their counter with a budget that has no cut.
    assert {c.id for c in cut} - {c.id for c in plain} == {cut[0].id}
    assert cut[1].id == "2024-11-19:-:key:k1"
