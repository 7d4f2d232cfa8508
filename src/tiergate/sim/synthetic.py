"""A synthetic week: arrivals shaped by an hour-of-week profile, lengths drawn from a trace.

Arrivals are a non-homogeneous Poisson process whose rate is piecewise constant by hour:
``mean_rate_per_s * profile[hour of week]``. Within an hour the gaps are exponential at that
hour's rate; at the hour's end the process restarts at the next hour's rate. Because the
exponential is memoryless, restarting at a boundary is exact (not an approximation of the
changing rate). Hour 0 of the week is Monday 00:00-01:00 UTC.

Each request's (prompt, output) token counts are drawn with replacement from the pairs of a
given trace, kept as two compact ``array('I')`` columns (:class:`RequestLengths`). Generation
streams: nothing is kept per request, and one request costs about a microsecond (see
:func:`synthetic_requests`).
"""

from __future__ import annotations

import json
import math
import random
import re
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tiergate.sim.workloads import TraceError, TraceRequest

HOURS_PER_WEEK = 168
_HIGH, _MEDIUM, _LOW = 4.0, 2.0, 1.0
_VALUE = re.compile(r"[^\s,;]+")


@dataclass(frozen=True, slots=True)
class RequestLengths:
    """(prompt, output) token counts to draw from, as two parallel columns."""

    prompts: array[int]
    outputs: array[int]

    def __post_init__(self) -> None:
        if len(self.prompts) != len(self.outputs):
            raise ValueError("prompts and outputs must have the same length")
        if not self.prompts:
            raise ValueError("no request lengths to draw from")

    @classmethod
    def of(cls, pairs: Iterable[tuple[int, int]]) -> RequestLengths:
        """The columns of ``(prompt_tokens, output_tokens)`` pairs."""
        prompts, outputs = array("I"), array("I")
        for prompt, output in pairs:
            prompts.append(prompt)
            outputs.append(output)
        return cls(prompts, outputs)

    def __len__(self) -> int:
        return len(self.prompts)


def lengths_from_trace(
    requests: Iterable[TraceRequest], limit: int | None = None
) -> RequestLengths:
    """The (prompt, output) pairs of a trace's first ``limit`` requests (all when None)."""
    if limit is not None and limit <= 0:
        raise ValueError(f"limit must be > 0, got {limit}")
    prompts, outputs = array("I"), array("I")
    for count, request in enumerate(requests, start=1):
        prompts.append(request.prompt_tokens)
        outputs.append(request.output_tokens)
        if limit is not None and count >= limit:
            break
    return RequestLengths(prompts, outputs)


def hour_of_week_profile() -> tuple[float, ...]:
    """The default shape of a week of traffic: business hours high, nights and weekends low.

    Built from three levels, high 4, medium 2 and low 1, then divided by their mean so the
    168 values average 1 (a mean rate stays the mean rate):

    - Monday to Friday, 09:00-18:00 UTC (hours 9-17 of each day): high, 9 hours a day;
    - Monday to Friday, 18:00-23:00 UTC (hours 18-22): medium, 5 hours a day;
    - every other hour (weekday nights 23:00-09:00, all of Saturday and Sunday): low.

    A weekday weighs 9*4 + 5*2 + 10*1 = 56, a weekend day 24; the week 5*56 + 2*24 = 328, so
    the mean is 328/168 and a business hour is 4 / (328/168) = 2.05 times the mean rate, a
    night or weekend hour 0.51 times.
    """
    levels: list[float] = []
    for day in range(7):
        for hour in range(24):
            if day >= 5:
                levels.append(_LOW)
            elif 9 <= hour < 18:
                levels.append(_HIGH)
            elif 18 <= hour < 23:
                levels.append(_MEDIUM)
            else:
                levels.append(_LOW)
    return normalise_profile(levels)


def normalise_profile(values: Sequence[float]) -> tuple[float, ...]:
    """168 relative weights scaled to mean 1; ``ValueError`` if they are not 168 values
    >= 0 with some above 0."""
    if len(values) != HOURS_PER_WEEK:
        raise ValueError(
            f"expected {HOURS_PER_WEEK} values (one per hour of the week, Monday 00:00 UTC "
            f"first), got {len(values)}"
        )
    if any(not math.isfinite(value) or value < 0 for value in values):
        raise ValueError("profile values must be finite numbers >= 0")
    mean = math.fsum(values) / HOURS_PER_WEEK
    if mean <= 0:
        raise ValueError("a profile of zeros has no traffic: some value must be > 0")
    return tuple(value / mean for value in values)


def read_profile(path: str | Path) -> tuple[float, ...]:
    """The 168 hourly weights in the file at ``path``, scaled to mean 1.

    The file is a JSON list of numbers, or numbers one per line, or several per line separated
    by commas, semicolons or blanks (CSV); blank lines and lines starting with ``#`` are
    skipped. Errors are :class:`TraceError` naming the file, the line and the hour.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise TraceError(source, 0, "", "no such file") from exc
    except IsADirectoryError as exc:
        raise TraceError(source, 0, "", "is a directory, expected a profile file") from exc
    except OSError as exc:
        raise TraceError(source, 0, "", f"cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise TraceError(source, 0, "", "not UTF-8 text") from exc
    if text.lstrip().startswith("["):
        values, last_line = _json_profile(text, source)
    else:
        values, last_line = _text_profile(text, source)
    if len(values) != HOURS_PER_WEEK:
        raise TraceError(
            source,
            last_line,
            "",
            f"expected {HOURS_PER_WEEK} values (one per hour of the week, Monday 00:00 UTC "
            f"first), got {len(values)}",
        )
    try:
        return normalise_profile(values)
    except ValueError as exc:
        raise TraceError(source, 0, "", str(exc)) from exc


def synthetic_requests(
    profile: Sequence[float],
    mean_rate_per_s: float,
    duration_s: float,
    lengths: RequestLengths | Sequence[tuple[int, int]],
    *,
    rng: random.Random | None = None,
    seed: int = 0,
    start_hour_of_week: int = 0,
) -> Iterator[TraceRequest]:
    """Requests arriving over ``[0, duration_s)`` at ``mean_rate_per_s * profile[hour]``.

    ``profile`` has 168 values (hour 0 is Monday 00:00 UTC; see :func:`hour_of_week_profile`);
    time 0 is the start of hour ``start_hour_of_week``. Lengths are drawn uniformly, with
    replacement, from ``lengths``. Randomness comes from ``rng``, else from ``seed``: the same
    seed gives the same requests.
    """
    if len(profile) != HOURS_PER_WEEK:
        raise ValueError(f"profile must have {HOURS_PER_WEEK} values, got {len(profile)}")
    if mean_rate_per_s < 0 or not math.isfinite(mean_rate_per_s):
        raise ValueError(f"mean_rate_per_s must be >= 0, got {mean_rate_per_s}")
    if duration_s < 0:
        raise ValueError(f"duration_s must be >= 0, got {duration_s}")
    columns = lengths if isinstance(lengths, RequestLengths) else RequestLengths.of(lengths)
    return _arrivals(
        tuple(profile),
        mean_rate_per_s,
        duration_s,
        columns,
        rng if rng is not None else random.Random(seed),
        start_hour_of_week % HOURS_PER_WEEK,
    )


def _arrivals(  # noqa: PLR0917 - private, called once, with its arguments in order
    profile: tuple[float, ...],
    mean_rate: float,
    duration_s: float,
    lengths: RequestLengths,
    rng: random.Random,
    hour: int,
) -> Iterator[TraceRequest]:
    # The hot loop (about 0.8 us a request, most of it building the TraceRequest): names
    # bound locally, one random() and one log per gap; the index from getrandbits with
    # rejection (unbiased, and faster than int(random() * n) or randrange).
    draw = rng.random
    bits = rng.getrandbits
    log = math.log
    prompts = lengths.prompts
    outputs = lengths.outputs
    count = len(prompts)
    width = count.bit_length()
    request = TraceRequest
    hour_start = 0.0
    while hour_start < duration_s:
        hour_end = min(hour_start + 3600.0, duration_s)
        rate = mean_rate * profile[hour]
        if rate > 0:
            mean_gap = 1.0 / rate
            at = hour_start
            while True:
                at -= log(1.0 - draw()) * mean_gap
                if at >= hour_end:
                    break
                pick = bits(width)
                while pick >= count:
                    pick = bits(width)
                yield request(at, prompts[pick], outputs[pick])
        hour_start += 3600.0
        hour = (hour + 1) % HOURS_PER_WEEK


def _json_profile(text: str, source: str) -> tuple[list[float], int]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceError(source, exc.lineno, "", f"not valid JSON: {exc.msg}") from exc
    if not isinstance(items, list):
        raise TraceError(source, 1, "", "expected a JSON list of numbers")
    values: list[float] = []
    for index, item in enumerate(items):
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise TraceError(source, 1, f"hour {index}", f"expected a number, got {item!r}")
        values.append(float(item))
    return values, text.count("\n") + 1


def _text_profile(text: str, source: str) -> tuple[list[float], int]:
    values: list[float] = []
    line_number = 0
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        for token in _VALUE.findall(line):
            try:
                value = float(token)
            except ValueError:
                raise TraceError(
                    source, line_number, f"hour {len(values)}", f"expected a number, got {token!r}"
                ) from None
            if not math.isfinite(value) or value < 0:
                raise TraceError(
                    source, line_number, f"hour {len(values)}", f"expected >= 0, got {token!r}"
                )
            values.append(value)
            if len(values) > HOURS_PER_WEEK:
                return values, line_number
    # Too few: the line where the next value was expected.
    return values, line_number + 1
