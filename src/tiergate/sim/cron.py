"""Five-field cron expressions, as KEDA's cron trigger and Karpenter's disruption budgets read
them, and the cron trigger's active window.

KEDA parses ``start`` and ``end``, and Karpenter a budget's ``schedule`` (in UTC), with
robfig/cron's standard parser ("Linux format": minute,
hour, day of month, month, day of week; https://keda.sh/docs/scalers/cron/). Kept from it:
``*`` and ``?``, lists, ranges, steps (``*/15``, ``9-17/2``, ``5/10`` meaning ``5-max/10``),
month and weekday names (``JAN``, ``MON``), Sunday as 0 or 7, the ``@hourly`` … ``@yearly``
descriptors, and its day rule: when either day field is ``*`` (or ``?``) both must match,
otherwise either may (``*/2`` is not a star for this rule).

Pure functions over aware datetimes; times are on the zone's wall clock. A wall time skipped by
a daylight-saving change is taken as zoneinfo resolves it (fold 0), where robfig/cron would
run at the first instant after the gap: the two differ by at most the size of the gap.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1
    )
}
_WEEKDAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
# (low, high, names) per field.
_FIELDS: tuple[tuple[int, int, dict[str, int]], ...] = (
    (0, 59, {}),
    (0, 23, {}),
    (1, 31, {}),
    (1, 12, _MONTHS),
    (0, 7, _WEEKDAYS),
)
# Look this far ahead for a next time (a day that never comes, such as 31 FEB, has none).
_SEARCH_DAYS = 366 * 5


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed expression: the allowed values of each field (weekdays 0-6, Sunday 0)."""

    text: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_star: bool  # the day-of-month field was * or ?
    weekdays_star: bool

    def _day_matches(self, day: dt.date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.days_star or self.weekdays_star:
            return dom and dow
        return dom or dow

    def matches(self, when: dt.datetime) -> bool:
        """Whether the minute of ``when`` (on its own wall clock) is one of the expression's."""
        return when.minute in self.minutes and when.hour in self.hours and self._day_matches(when)

    def previous_fire(self, when: dt.datetime, *, within: dt.timedelta) -> dt.datetime | None:
        """The latest time ``f <= when`` the expression names with ``f > when - within``, or
        ``None`` (a Karpenter budget is active for ``duration`` after each fire time).

        Walks back day by day over the window only (days that cannot fire are skipped whole),
        so a budget check costs a few steps, not one per minute of its duration.
        """
        earliest = when - within
        day = when.date()
        midnight = dt.time()
        while dt.datetime.combine(day, midnight, when.tzinfo) + dt.timedelta(days=1) > earliest:
            if self._day_matches(day):
                start = dt.datetime.combine(day, midnight, when.tzinfo)
                for hour in reversed(self.hours):
                    for minute in reversed(self.minutes):
                        fire = start + dt.timedelta(hours=hour, minutes=minute)
                        if fire <= when:
                            return fire if fire > earliest else None
            day -= dt.timedelta(days=1)
        return None

    def next_after(self, when: dt.datetime) -> dt.datetime:
        """The first time strictly after ``when`` (aware) that the expression names, in
        ``when``'s zone; ValueError if none within five years."""
        tz = when.tzinfo
        if tz is None:
            raise ValueError("next_after needs an aware datetime")
        day = when.date()
        for _ in range(_SEARCH_DAYS):
            if self._day_matches(day):
                for hour in self.hours:
                    for minute in self.minutes:
                        wall = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)
                        if wall > when:
                            return wall
            day += dt.timedelta(days=1)
        raise ValueError(f"cron {self.text!r} names no time within five years of {when}")


def _values(part: str, low: int, high: int, names: dict[str, int]) -> tuple[set[int], bool]:
    """One comma-separated item's values, and whether it was a plain star."""
    range_part, _, step_text = part.partition("/")
    step = 1
    if step_text:
        if not step_text.isdigit() or int(step_text) == 0:
            raise ValueError(f"bad step {step_text!r}")
        step = int(step_text)
    star = range_part in ("*", "?")
    if star:
        first, last = low, high
    else:
        start_text, dash, end_text = range_part.partition("-")
        first = _number(start_text, names)
        # "5/10" means from 5 to the end, stepping 10 (robfig/cron).
        last = _number(end_text, names) if dash else (high if step_text else first)
    if not low <= first <= last <= high:
        raise ValueError(f"{part!r} is outside {low}-{high}")
    return set(range(first, last + 1, step)), star and step == 1


def _number(text: str, names: dict[str, int]) -> int:
    upper = text.upper()
    if upper in names:
        return names[upper]
    if not text.isdigit():
        raise ValueError(f"{text!r} is not a number{' or a name' if names else ''}")
    return int(text)


def parse_cron(text: str) -> Cron:
    """``text`` as a :class:`Cron`; ValueError saying what is wrong."""
    expr = _DESCRIPTORS.get(text.strip().lower(), text)
    if expr.strip().startswith("@"):
        raise ValueError(f"unknown schedule macro {text!r}; known: {', '.join(_DESCRIPTORS)}")
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(
            f"cron {text!r} has {len(fields)} fields, expected 5 (minute hour day month weekday)"
        )
    parsed: list[set[int]] = []
    stars: list[bool] = []
    for name, field, (low, high, names) in zip(
        ("minute", "hour", "day of month", "month", "day of week"), fields, _FIELDS, strict=True
    ):
        values: set[int] = set()
        star = False
        for part in field.split(","):
            try:
                more, is_star = _values(part, low, high, names)
            except ValueError as exc:
                raise ValueError(f"cron {text!r}: {name} field {field!r}: {exc}") from None
            values |= more
            star = star or is_star
        parsed.append(values)
        stars.append(star)
    minutes, hours, days, months, weekdays = parsed
    return Cron(
        text=text,
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days=frozenset(days),
        months=frozenset(months),
        weekdays=frozenset(day % 7 for day in weekdays),
        days_star=stars[2],
        weekdays_star=stars[4],
    )


def window(start: Cron, end: Cron, when: dt.datetime) -> tuple[bool, dt.datetime]:
    """Whether KEDA's cron trigger is active at ``when``, and until when that holds.

    KEDA's ``cron_scaler.go``: the trigger is inactive while the next start comes before the
    next end, active otherwise (between a start and the end that follows it). The answer holds
    until the earlier of the two next times.
    """
    next_start = start.next_after(when)
    next_end = end.next_after(when)
    return next_start >= next_end, min(next_start, next_end)


def zone(name: str) -> dt.tzinfo:
    """The IANA time zone ``name``; ``UTC`` needs no time-zone database. ValueError naming the
    zone when it is unknown or the database (the ``tzdata`` package or ``/usr/share/zoneinfo``)
    is missing."""
    if name in ("UTC", "Etc/UTC"):
        return dt.UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {name!r} (an IANA name such as Europe/Paris; the time-zone "
            "database comes from the system's /usr/share/zoneinfo or the tzdata package)"
        ) from exc
