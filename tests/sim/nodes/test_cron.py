"""The cron matcher behind disruption-budget schedules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tiergate.sim.nodes.cron import parse_schedule


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_weekday_mornings_match_only_monday_to_friday_at_nine() -> None:
    schedule = parse_schedule("0 9 * * 1-5")
    assert schedule.matches(at("2026-12-08T09:00"))  # a Tuesday
    assert not schedule.matches(at("2026-12-08T09:01"))
    assert not schedule.matches(at("2026-12-12T09:00"))  # a Saturday


def test_lists_ranges_steps_and_names() -> None:
    schedule = parse_schedule("*/15 8-10,20 * jan-mar mon,wed")
    assert schedule.minutes == (0, 15, 30, 45)
    assert schedule.hours == (8, 9, 10, 20)
    assert schedule.months == frozenset({1, 2, 3})
    assert schedule.days_of_week == frozenset({1, 3})
    assert parse_schedule("5/20 * * * *").minutes == (5, 25, 45)  # "5/20" is 5-59/20


def test_sunday_is_zero_or_seven() -> None:
    sunday = at("2026-12-13T00:00")
    assert parse_schedule("0 0 * * 0").matches(sunday)
    assert parse_schedule("0 0 * * 7").matches(sunday)
    assert parse_schedule("@weekly").matches(sunday)


def test_both_day_fields_restricted_means_either_one() -> None:
    # The 1st of the month or any Friday: Friday 2026-12-11 and Tuesday 2026-12-01 both fire.
    schedule = parse_schedule("0 0 1 * 5")
    assert schedule.matches(at("2026-12-11T00:00"))
    assert schedule.matches(at("2026-12-01T00:00"))
    assert not schedule.matches(at("2026-12-08T00:00"))
    # With day-of-week "*", only the 1st fires.
    assert not parse_schedule("0 0 1 * *").matches(at("2026-12-11T00:00"))


def test_macros() -> None:
    assert parse_schedule("@daily") == parse_schedule("0 0 * * *")
    assert parse_schedule("@midnight") == parse_schedule("0 0 * * *")
    assert parse_schedule("@hourly") == parse_schedule("0 * * * *")
    assert parse_schedule("@monthly") == parse_schedule("0 0 1 * *")
    assert parse_schedule("@yearly") == parse_schedule("0 0 1 1 *")


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
        parse_schedule(text)


def test_previous_fire_looks_back_only_over_the_window() -> None:
    schedule = parse_schedule("0 18 * * 1-5")
    # Saturday 03:00: the last fire was Friday 18:00, 9 h ago.
    saturday = at("2026-12-12T03:00")
    assert schedule.previous_fire(saturday, within=timedelta(hours=15)) == at("2026-12-11T18:00")
    assert schedule.previous_fire(saturday, within=timedelta(hours=9)) is None
