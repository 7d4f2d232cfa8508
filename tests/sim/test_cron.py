"""KEDA's cron expressions and window: next times, the weekend, the day rule, time zones."""

from __future__ import annotations

import datetime as dt

import pytest

from tiergate.sim.cron import parse_cron, window, zone

UTC = dt.UTC


def at(text: str, tz: dt.tzinfo = UTC) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=tz)


def test_next_weekday_morning_skips_the_weekend() -> None:
    start = parse_cron("0 9 * * 1-5")
    # 2026-12-11 is a Friday: after 18:00 the next 09:00 on a weekday is Monday the 14th.
    assert start.next_after(at("2026-12-11T18:00")) == at("2026-12-14T09:00")
    assert start.next_after(at("2026-12-14T08:59:30")) == at("2026-12-14T09:00")
    assert start.next_after(at("2026-12-14T09:00")) == at("2026-12-15T09:00")  # strictly after


def test_office_hours_window() -> None:
    start, end = parse_cron("0 9 * * MON-FRI"), parse_cron("0 18 * * 1-5")
    assert window(start, end, at("2026-12-07T08:59")) == (False, at("2026-12-07T09:00"))
    assert window(start, end, at("2026-12-07T09:00")) == (True, at("2026-12-07T18:00"))
    assert window(start, end, at("2026-12-07T17:59:59")) == (True, at("2026-12-07T18:00"))
    assert window(start, end, at("2026-12-07T18:00")) == (False, at("2026-12-08T09:00"))
    # Saturday noon: closed until Monday 09:00.
    assert window(start, end, at("2026-12-12T12:00")) == (False, at("2026-12-14T09:00"))


def test_steps_lists_names_and_sunday_as_seven() -> None:
    cron = parse_cron("*/20 8,20 * JAN-MAR 7")
    assert cron.minutes == (0, 20, 40)
    assert cron.hours == (8, 20)
    assert cron.months == frozenset({1, 2, 3})
    assert cron.weekdays == frozenset({0})
    assert parse_cron("5/20 * * * *").minutes == (5, 25, 45)  # robfig: 5-59/20
    assert parse_cron("@daily").next_after(at("2026-12-07T10:00")) == at("2026-12-08T00:00")


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    # Vixie cron and robfig/cron: the 1st of the month OR any Monday.
    cron = parse_cron("0 0 1 * 1")
    assert cron.matches(at("2026-12-01T00:00"))  # a Tuesday, but the 1st
    assert cron.matches(at("2026-12-07T00:00"))  # a Monday, the 7th
    assert not cron.matches(at("2026-12-08T00:00"))
    # With a star in one day field both must match: Mondays only.
    assert not parse_cron("0 0 * * 1").matches(at("2026-12-01T00:00"))


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("0 9 * *", "has 4 fields"),
        ("60 9 * * *", "outside 0-59"),
        ("0 9 * * FUN", "not a number or a name"),
        ("*/0 9 * * *", "bad step"),
    ],
)
def test_bad_expressions_say_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_cron(text)


def test_time_zones() -> None:
    assert zone("UTC") is UTC  # without a time-zone database
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        zone("Mars/Olympus")
    try:
        paris = zone("Europe/Paris")
    except ValueError:
        pytest.skip("no time-zone database on this machine")
    start = parse_cron("0 9 * * *")
    # 09:00 in Paris in December is 08:00 UTC (CET, UTC+1).
    after = at("2026-12-07T00:00").astimezone(paris)
    assert start.next_after(after).astimezone(UTC) == at("2026-12-07T08:00")
