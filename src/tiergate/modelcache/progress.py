"""What a fetch shows while it runs, and its final summary.

On a terminal: a rich progress bar per phase (download, verify). Otherwise (an init
container's log): one JSON line per second at most, ``{"event": "progress", "phase",
"bytes", "total", "rate_mb_s", "eta_s"}``. The summary is a table or one JSON line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TextIO

import rich.console
import rich.progress
import rich.table

from tiergate.modelcache.select import human_bytes

if TYPE_CHECKING:
    from tiergate.modelcache.fetch import FetchSummary

MB = 1_000_000


class Progress(Protocol):
    """Receives a fetch's phases and the bytes each phase has moved or hashed."""

    def phase(self, name: str, total_bytes: int) -> None: ...

    def advance(self, count: int) -> None: ...

    def close(self) -> None: ...


class NullProgress:
    """Shows nothing."""

    def phase(self, name: str, total_bytes: int) -> None:
        pass

    def advance(self, count: int) -> None:
        pass

    def close(self) -> None:
        pass


class JsonLinesProgress:
    """Writes a progress line to ``stream`` at most once per ``interval_s``."""

    def __init__(
        self,
        stream: TextIO,
        *,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._interval_s = interval_s
        self._clock = clock
        self._name = ""
        self._total = 0
        self._done = 0
        self._started = self._last = clock()

    def phase(self, name: str, total_bytes: int) -> None:
        self._name, self._total, self._done = name, total_bytes, 0
        self._started = self._clock()

    def advance(self, count: int) -> None:
        self._done += count
        now = self._clock()
        if now - self._last >= self._interval_s:
            self._last = now
            self._emit(now)

    def _emit(self, now: float) -> None:
        elapsed = max(now - self._started, 1e-9)
        rate = self._done / elapsed
        remaining = max(0, self._total - self._done)
        line = {
            "event": "progress",
            "phase": self._name,
            "bytes": self._done,
            "total": self._total,
            "rate_mb_s": round(rate / MB, 1),
            "eta_s": round(remaining / rate, 1) if rate > 0 else None,
        }
        self._stream.write(json.dumps(line) + "\n")
        self._stream.flush()

    def close(self) -> None:
        pass


class RichProgress:
    """A rich progress bar (on stderr) per phase."""

    def __init__(self) -> None:
        self._bar = rich.progress.Progress(
            rich.progress.TextColumn("{task.description:>8}"),
            rich.progress.BarColumn(),
            rich.progress.DownloadColumn(),
            rich.progress.TransferSpeedColumn(),
            rich.progress.TimeRemainingColumn(),
            console=rich.console.Console(stderr=True),
            transient=False,
        )
        self._task: rich.progress.TaskID | None = None
        self._bar.start()

    def phase(self, name: str, total_bytes: int) -> None:
        self._task = self._bar.add_task(name, total=total_bytes)

    def advance(self, count: int) -> None:
        if self._task is not None:
            self._bar.advance(self._task, count)

    def close(self) -> None:
        self._bar.stop()


def make_progress(*, json_lines: bool, stream: TextIO) -> Progress:
    """JSON lines when asked or when ``stream`` is not a terminal, else a progress bar."""
    if json_lines or not stream.isatty():
        return JsonLinesProgress(stream)
    return RichProgress()


def summary_json(summary: FetchSummary) -> str:
    """The summary as one JSON line (``"event": "summary"``)."""
    return json.dumps({"event": "summary", **summary.as_dict()})


def print_summary(summary: FetchSummary, *, json_lines: bool, stream: TextIO) -> None:
    """The summary as a JSON line, or as a table for people."""
    if json_lines:
        stream.write(summary_json(summary) + "\n")
        stream.flush()
        return
    table = rich.table.Table(title=f"tiergate fetch: {summary.status}", show_header=False)
    rows: list[tuple[str, Any]] = [
        ("source", summary.source),
        ("dest", summary.dest),
        ("files", summary.files),
        ("model size", human_bytes(summary.bytes)),
        ("transferred", human_bytes(summary.bytes_transferred)),
        ("seconds", f"{summary.seconds:.2f}"),
        ("throughput", f"{summary.mb_per_s:.1f} MB/s"),
        ("retries", summary.retries),
        ("repairs", summary.repairs),
        ("files verified", summary.files_verified),
    ]
    if summary.note:
        rows.append(("note", summary.note))
    for name, value in rows:
        table.add_row(name, str(value))
    rich.console.Console(file=stream).print(table)
