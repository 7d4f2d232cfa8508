"""Five-field cron schedules, as Karpenter's disruption budgets read them (in UTC).

Karpenter parses ``schedule`` with robfig/cron v3's standard parser: ``minute hour
day-of-month month day-of-week`` with ``*``, lists, ranges, steps and names (``jan``,
``mon``), Sunday as 0 or 7, and the macros ``@yearly`` (``@annually``), ``@monthly``,
``@weekly``, ``@daily`` (``@midnight``) and ``@hourly``. When both day fields are restricted a
day matches either (the traditional OR rule); when either is ``*`` both must match.

This module imports nothing from tiergate so that the spec can validate schedules with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
_DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# (name, lowest, highest, names) per field, in order.
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A parsed schedule; the sets hold the values each field allows (Sunday is 0)."""

    minutes: tuple[int, ...]  # ascending
    hours: tuple[int, ...]  # ascending
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]
    day_of_month_star: bool
    day_of_week_star: bool

    def day_matches(self, day: date) -> bool:
        """Whether the schedule fires on ``day`` at all (robfig's day rule)."""
        if day.month not in self.months:
            return False
        dom = day.day in self.days_of_month
        dow = (day.weekday() + 1) % 7 in self.days_of_week  # Python: Monday 0; cron: Sunday 0
        if self.day_of_month_star or self.day_of_week_star:
            return dom and dow
        return dom or dow

    def matches(self, when: datetime) -> bool:
        """Whether the schedule fires at the minute of ``when``."""
        return (
            when.minute in self.minutes
            and when.hour in self.hours
            and self.day_matches(when.date())
        )

    def previous_fire(self, when: datetime, *, within: timedelta) -> datetime | None:
        """The latest fire time ``f <= when`` with ``f > when - within``, or ``None``.

        Walks back day by day over the window only (days that cannot fire are skipped whole),
        so a budget check costs a few steps, not one per minute of its duration.
        """
        earliest = when - within
        day = when.date()
        while (
            datetime.combine(day, datetime.min.time(), when.tzinfo) + timedelta(days=1) > earliest
        ):
            if self.day_matches(day):
                midnight = datetime.combine(day, datetime.min.time(), when.tzinfo)
                for hour in reversed(self.hours):
                    for minute in reversed(self.minutes):
                        fire = midnight + timedelta(hours=hour, minutes=minute)
                        if fire <= when:
                            return fire if fire > earliest else None
            day -= timedelta(days=1)
        return None


def parse_schedule(text: str) -> CronSchedule:
    """Parse a cron expression or macro; ``ValueError`` says which field is wrong."""
    expanded = MACROS.get(text.strip().lower(), text) if text.strip().startswith("@") else text
    if expanded.strip().startswith("@"):
        raise ValueError(f"unknown schedule macro {text!r}; known: {', '.join(MACROS)}")
    parts = expanded.split()
    if len(parts) != 5:
        raise ValueError(
            f"schedule {text!r} has {len(parts)} fields; expected 5 "
            "(minute hour day-of-month month day-of-week) or a macro such as @daily"
        )
    fields = [_parse_field(part, *spec) for part, spec in zip(parts, _FIELDS, strict=True)]
    days_of_week = frozenset(d % 7 for d in fields[4][0])  # 7 is Sunday too
    return CronSchedule(
        minutes=tuple(sorted(fields[0][0])),
        hours=tuple(sorted(fields[1][0])),
        days_of_month=frozenset(fields[2][0]),
        months=frozenset(fields[3][0]),
        days_of_week=days_of_week,
        day_of_month_star=fields[2][1],
        day_of_week_star=fields[4][1],
    )


def _parse_field(
    text: str, name: str, lowest: int, highest: int, names: dict[str, int]
) -> tuple[set[int], bool]:
    """The values one field allows, and whether it was an unstepped ``*`` (or ``?``)."""
    values: set[int] = set()
    star = False
    for item in text.split(","):
        span, _, step_text = item.partition("/")
        step = _number(step_text, name, {}) if step_text else 1
        if step < 1:
            raise ValueError(f"{name}: step must be at least 1 in {text!r}")
        if span in ("*", "?"):
            low, high = lowest, highest
            star = star or step == 1  # robfig: "*/2" is a restriction, "*" is not
        elif "-" in span:
            first, _, last = span.partition("-")
            low, high = _number(first, name, names), _number(last, name, names)
        else:
            low = _number(span, name, names)
            high = highest if step_text else low  # "5/15" means 5-max/15
        if not lowest <= low <= high <= highest:
            raise ValueError(f"{name}: {item!r} is outside {lowest}-{highest} or reversed")
        values.update(range(low, high + 1, step))
    return values, star


def _number(text: str, name: str, names: dict[str, int]) -> int:
    value = names.get(text.lower())
    if value is not None:
        return value
    if not text.isdigit():
        raise ValueError(f"{name}: {text!r} is not a number")
    return int(text)
