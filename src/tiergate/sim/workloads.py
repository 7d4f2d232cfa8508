"""Workloads from public LLM request traces: streaming readers, slicing, time compression and
rate scaling.

Two published formats are read, whatever the file (the Azure conversation and 2024 week-long
traces share the first format, the Mooncake conversation and tool traces the second):

- **Azure LLM inference trace** (Azure/AzurePublicDataset), CSV with a header naming at least
  ``TIMESTAMP`` (wall clock, such as ``2023-11-16 18:17:03.9799600``), ``ContextTokens`` and
  ``GeneratedTokens``. Arrivals are seconds after the first row. Extra columns, CRLF line ends,
  a UTF-8 byte-order mark and a last line without a newline are accepted.
- **Mooncake trace** (kvcache-ai/Mooncake), JSON Lines of objects with ``timestamp``
  (milliseconds from the start of the trace), ``input_length``, ``output_length`` and optionally
  ``hash_ids`` (ids of 512-token prompt blocks: equal ids mean a shared prefix).

Readers are generators: a week-long trace is never held in memory, and :func:`slice_trace`
stops reading at the end of its window. Both formats are in arrival order, which slicing relies
on. A malformed row raises :class:`TraceError` naming the file, line and field.
"""

from __future__ import annotations

import csv
import heapq
import json
import math
import random
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, NamedTuple, TextIO

from tiergate.errors import TiergateError

TraceFormat = Literal["azure-csv", "mooncake-jsonl"]

_AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
_MOONCAKE_FIELDS = ("timestamp", "input_length", "output_length")
# Date, time, up to 9 decimals (the Azure traces have 7; datetime parses at most 6), and an
# optional UTC offset (the 2024 traces write one).
_WALL_CLOCK = re.compile(
    r"(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?\s*(Z|[+-]\d{2}:?\d{2})?"
)
_SNIFF_BYTES = 4096


class TraceError(TiergateError):
    """A trace file cannot be read: ``file``, 1-based ``line`` (0: the file as a whole) and
    ``field`` (empty: the row as a whole) locate the problem."""

    def __init__(self, file: str, line: int, field: str, message: str) -> None:
        self.file = file
        self.line = line
        self.field = field
        self.message = message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")


class TraceRequest(NamedTuple):
    """One request of a trace: when it arrives and how many tokens go in and come out.

    ``prefix_ids`` are the trace's prompt-block ids (Mooncake ``hash_ids``), empty when the
    trace has none. A named tuple rather than a frozen dataclass: a workload builds one per
    request (millions in a week), and a tuple is built about three times faster.
    """

    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    prefix_ids: tuple[int, ...] = ()


def trace_format(path: str | Path) -> TraceFormat:
    """The format of the trace at ``path``, from its first line, else from its extension."""
    source = str(path)
    with _open(Path(path), source) as handle:
        head = handle.read(_SNIFF_BYTES)
    first = next((line.strip() for line in head.splitlines() if line.strip()), "")
    if first.startswith("{"):
        return "mooncake-jsonl"
    if "TIMESTAMP" in (column.strip().strip('"').upper() for column in first.split(",")):
        return "azure-csv"
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".json"):
        return "mooncake-jsonl"
    if suffix == ".csv":
        return "azure-csv"
    what = "the file is empty" if not first else f"its first line is {first[:60]!r}"
    raise TraceError(
        source,
        0,
        "",
        f"not a known trace format ({what}): expected an Azure LLM inference trace CSV "
        "(header TIMESTAMP,ContextTokens,GeneratedTokens) or a Mooncake JSONL trace (objects "
        "with timestamp, input_length, output_length, hash_ids)",
    )


def read_trace(path: str | Path) -> Iterator[TraceRequest]:
    """The requests of the trace at ``path``, in either format (see :func:`trace_format`)."""
    if trace_format(path) == "mooncake-jsonl":
        return read_mooncake_jsonl(path)
    return read_azure_csv(path)


def read_azure_csv(path: str | Path) -> Iterator[TraceRequest]:
    """The requests of an Azure-format CSV trace; arrivals are seconds after the first row."""
    source = str(path)
    with _open(Path(path), source) as handle:
        rows = _csv_rows(handle, source)
        header_line, header = next(rows, (1, None))
        if header is None:
            raise TraceError(source, 1, "", f"empty file: expected a header with {_azure_names()}")
        names = [name.strip() for name in header]
        missing = [column for column in _AZURE_COLUMNS if column not in names]
        if missing:
            raise TraceError(
                source,
                header_line,
                "",
                f"missing column {', '.join(missing)}: expected a header with {_azure_names()}, "
                f"found {', '.join(names)}",
            )
        at = [names.index(column) for column in _AZURE_COLUMNS]
        width = max(at) + 1
        first: tuple[datetime, float] | None = None
        for line, row in rows:
            if len(row) == 1 and not row[0].strip():
                continue  # a line of blanks
            if len(row) < width:
                raise TraceError(
                    source,
                    line,
                    "",
                    f"expected {len(names)} columns as in the header, got {len(row)}",
                )
            when = _wall_clock(row[at[0]], source, line)
            if first is None:
                first = when
            arrival = (when[0] - first[0]).total_seconds() + (when[1] - first[1])
            yield TraceRequest(
                arrival_s=arrival,
                prompt_tokens=_tokens(row[at[1]], source, line, _AZURE_COLUMNS[1]),
                output_tokens=_tokens(row[at[2]], source, line, _AZURE_COLUMNS[2]),
            )


def read_mooncake_jsonl(path: str | Path) -> Iterator[TraceRequest]:
    """The requests of a Mooncake-format JSONL trace; arrivals are the trace's own timestamps."""
    source = str(path)
    with _open(Path(path), source) as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                item = json.loads(text)
            except json.JSONDecodeError as exc:
                raise TraceError(source, line, "", f"not a JSON object: {exc.msg}") from exc
            if not isinstance(item, dict):
                raise TraceError(source, line, "", f"expected a JSON object, got {_show(item)}")
            for name in _MOONCAKE_FIELDS:
                if name not in item:
                    raise TraceError(source, line, name, "missing")
            stamp = item["timestamp"]
            if isinstance(stamp, bool) or not isinstance(stamp, int | float) or stamp < 0:
                raise TraceError(
                    source, line, "timestamp", f"expected milliseconds >= 0, got {_show(stamp)}"
                )
            yield TraceRequest(
                arrival_s=stamp / 1000,
                prompt_tokens=_json_tokens(item["input_length"], source, line, "input_length"),
                output_tokens=_json_tokens(item["output_length"], source, line, "output_length"),
                prefix_ids=_hash_ids(item.get("hash_ids", []), source, line),
            )


def slice_trace(
    requests: Iterable[TraceRequest],
    *,
    start_s: float = 0.0,
    duration_s: float | None = None,
    limit: int | None = None,
) -> Iterator[TraceRequest]:
    """The requests arriving in ``[start_s, start_s + duration_s)``, at most ``limit`` of them,
    with arrivals re-based so that ``start_s`` is 0. Stops reading at the window's end."""
    if start_s < 0:
        raise ValueError(f"start_s must be >= 0, got {start_s}")
    if duration_s is not None and duration_s <= 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    end = None if duration_s is None else start_s + duration_s
    taken = 0
    for request in requests:
        if limit is not None and taken >= limit:
            return
        if end is not None and request.arrival_s >= end:
            return
        if request.arrival_s < start_s:
            continue
        taken += 1
        yield TraceRequest(
            request.arrival_s - start_s,
            request.prompt_tokens,
            request.output_tokens,
            request.prefix_ids,
        )


def speed_up(requests: Iterable[TraceRequest], speedup: float) -> Iterator[TraceRequest]:
    """The same requests arriving ``speedup`` times faster (2: an hour of trace in 30 minutes)."""
    if speedup <= 0:
        raise ValueError(f"speedup must be > 0, got {speedup}")
    for request in requests:
        yield TraceRequest(
            request.arrival_s / speedup,
            request.prompt_tokens,
            request.output_tokens,
            request.prefix_ids,
        )


def scale_rate(
    requests: Iterable[TraceRequest], factor: float, *, seed: int = 0, spread_s: float = 1.0
) -> Iterator[TraceRequest]:
    """The same trace at ``factor`` times its rate, over the same time: its bursts and lulls
    keep their length (unlike :func:`speed_up`, which also shortens them).

    Each request is kept and copied ``floor(factor) - 1`` more times, plus once more with
    probability ``factor - floor(factor)`` (below 1: kept with probability ``factor``); copies
    arrive up to ``spread_s`` seconds after the original (uniformly, from ``seed``), so that
    they do not land on the same instant. Arrival order is kept.
    """
    if factor <= 0:
        raise ValueError(f"factor must be > 0, got {factor}")
    if spread_s < 0:
        raise ValueError(f"spread_s must be >= 0, got {spread_s}")
    rng = random.Random(seed)
    # uniform(0, spread) is 0 + spread * random(): the same float as spread * random() (for
    # a non-negative product), without a Python call per copy.
    draw = rng.random
    whole = math.floor(factor)
    waiting: list[tuple[float, int, TraceRequest]] = []  # copies not yet due, by arrival
    order = 0  # ties keep the order they were made in
    for request in requests:
        while waiting and waiting[0][0] <= request.arrival_s:
            yield heapq.heappop(waiting)[2]
        copies = whole + (draw() < factor - whole)
        for copy in range(copies):
            at = request.arrival_s + (spread_s * draw() if copy else 0.0)
            moved = TraceRequest(
                at, request.prompt_tokens, request.output_tokens, request.prefix_ids
            )
            heapq.heappush(waiting, (at, order, moved))
            order += 1
    while waiting:
        yield heapq.heappop(waiting)[2]


@contextmanager
def _open(path: Path, source: str) -> Iterator[TextIO]:
    """``path`` opened for reading text, with OS and decoding errors as :class:`TraceError`."""
    try:
        # newline="": the csv module handles CRLF itself; utf-8-sig drops a byte-order mark.
        handle = path.open(encoding="utf-8-sig", newline="")
    except FileNotFoundError as exc:
        raise TraceError(source, 0, "", "no such file") from exc
    except IsADirectoryError as exc:
        raise TraceError(source, 0, "", "is a directory, expected a trace file") from exc
    except OSError as exc:
        raise TraceError(source, 0, "", f"cannot read: {exc.strerror}") from exc
    with handle:
        try:
            yield handle
        except UnicodeDecodeError as exc:
            raise TraceError(source, 0, "", "not UTF-8 text") from exc


def _csv_rows(handle: TextIO, source: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each non-empty CSV row, with csv's errors as TraceError."""
    rows = csv.reader(handle)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:
            raise TraceError(source, rows.line_num, "", f"not valid CSV: {exc}") from exc
        if row:
            yield rows.line_num, row


def _azure_names() -> str:
    return ", ".join(_AZURE_COLUMNS) + " (the Azure LLM inference trace format)"


def _wall_clock(text: str, source: str, line: int) -> tuple[datetime, float]:
    """(whole seconds, fraction) of a ``TIMESTAMP``: kept apart so that subtracting two of them
    loses none of the 7 decimals to float rounding of an epoch-sized number."""
    match = _WALL_CLOCK.fullmatch(text.strip())
    if match is None:
        raise TraceError(
            source,
            line,
            _AZURE_COLUMNS[0],
            f"expected a date and time such as '2023-11-16 18:17:03.9799600', got {text!r}",
        )
    date, time, digits, offset = match.groups()
    stamp = f"{date}T{time}"
    if offset:
        stamp += "+00:00" if offset == "Z" else offset
    try:
        whole = datetime.fromisoformat(stamp)
    except ValueError as exc:
        raise TraceError(
            source, line, _AZURE_COLUMNS[0], f"not a valid date and time: {text.strip()!r}"
        ) from exc
    if whole.tzinfo is None:
        # The published traces give no zone; reading them as UTC makes mixed files comparable.
        whole = whole.replace(tzinfo=UTC)
    return whole, (int(digits) / 10 ** len(digits) if digits else 0.0)


def _tokens(text: str, source: str, line: int, field: str) -> int:
    value = text.strip()
    if not value.isdigit() or not value.isascii():
        raise TraceError(
            source, line, field, f"expected a whole number of tokens >= 0, got {text!r}"
        )
    return int(value)


def _json_tokens(value: object, source: str, line: int, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TraceError(
            source, line, field, f"expected a whole number of tokens >= 0, got {_show(value)}"
        )
    return value


def _hash_ids(value: object, source: str, line: int) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(item, int) and not isinstance(item, bool) for item in value
    ):
        raise TraceError(
            source, line, "hash_ids", f"expected a list of whole numbers, got {_show(value)}"
        )
    return tuple(value)


def _show(value: object) -> str:
    """A JSON value as it was written, shortened for a message."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
