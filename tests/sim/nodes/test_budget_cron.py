"""The cron matcher behind disruption-budget schedules."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tiergate.sim.cron import Cron, parse_cron


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_weekday_mornings_match_only_monday_to_friday_at_nine() -> None:
    schedule = parse_cron("0 9 * * 1-5")
    assert schedule.matches(at("2026-12-08T09:00"))  # a Tuesday
    assert not schedule.matches(at("2026-12-08T09:01"))
    assert not schedule.matches(at("2026-12-12T09:00"))  # a Saturday


def test_lists_ranges_steps_and_names() -> None:
    schedule = parse_cron("*/15 8-10,20 * jan-mar mon,wed")
    assert schedule.minutes == (0, 15, 30, 45)
    assert schedule.hours == (8, 9, 10, 20)
    assert schedule.months == frozenset({1, 2, 3})
    assert schedule.weekdays == frozenset({1, 3})
    assert parse_cron("5/20 * * * *").minutes == (5, 25, 45)  # "5/20" is 5-59/20


def test_sunday_is_zero_or_seven() -> None:
    sunday = at("2026-12-13T00:00")
    assert parse_cron("0 0 * * 0").matches(sunday)
    assert parse_cron("0 0 * * 7").matches(sunday)
    assert parse_cron("@weekly").matches(sunday)


def test_both_day_fields_restricted_means_either_one() -> None:
    # The 1st of the month or any Friday: Friday 2026-12-11 and Tuesday 2026-12-01 both fire.
    schedule = parse_cron("0 0 1 * 5")
    assert schedule.matches(at("2026-12-11T00:00"))
    assert schedule.matches(at("2026-12-01T00:00"))
    assert not schedule.matches(at("2026-12-08T00:00"))
    # With day-of-week "*", only the 1st fires.
    assert not parse_cron("0 0 1 * *").matches(at("2026-12-11T00:00"))


def _same(a: Cron, b: Cron) -> bool:
    """Two expressions allow the same times (their texts differ)."""
    return replace(a, text="") == replace(b, text="")


def test_macros() -> None:
    assert _same(parse_cron("@daily"), parse_cron("0 0 * * *"))
    assert _same(parse_cron("@midnight"), parse_cron("0 0 * * *"))
    assert _same(parse_cron("@hourly"), parse_cron("0 * * * *"))
    assert _same(parse_cron("@monthly"), parse_cron("0 0 1 * *"))
    assert _same(parse_cron("@yearly"), parse_cron("0 0 1 1 *"))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("0 9 * *", "4 fields"),
        ("60 * * * *", "minute"),
        ("0 24 * * *", "hour"),
        ("0 0 * * 8", "day of week"),
        ("0 0 * foo *", "month"),
        ("@often", "unknown schedule macro"),
    ],
)
def test_bad_schedules_say_which_field(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_cron(text)


def test_previous_fire_looks_back_only_over_the_window() -> None:
    schedule = parse_cron("0 18 * * 1-5")
    # Saturday 03:00: the last fire was Friday 18:00, 9 h ago.
    saturday = at("2026-12-12T03:00")
    assert schedule.previous_fire(saturday, within=timedelta(hours=15)) == at("2026-12-11T18:00")
    assert schedule.previous_fire(saturday, within=timedelta(hours=9)) is None
