"""The files a simulation writes into its output folder: ``summary.json``, ``requests.csv``
(optional, one row per request, streamed) and ``report.html`` (tables and plots in one file).

Each is a function of the result alone, so the same result gives the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TextIO

from tiergate.sim.outputs.html import report_html
from tiergate.sim.result import SimResult

SUMMARY_JSON = "summary.json"
REQUESTS_CSV = "requests.csv"
REPORT_HTML = "report.html"

REQUESTS_COLUMNS = (
    "arrival_s",
    "tier",
    "status",
    "prompt_tokens",
    "output_tokens",
    "ttft_s",
    "e2e_s",
    "itl_s",
    "attempts",
    "fallback_reasons",
)
# Rows buffered before one write: large enough that a week's millions of rows cost few system
# calls, small enough (a few hundred KiB) to keep memory flat.
CSV_BLOCK_ROWS = 4096


def write_summary_json(result: SimResult, directory: str | Path, *, timing: bool = True) -> Path:
    """Write ``DIRECTORY/summary.json`` (``SimResult.to_json``) and return its path."""
    path = Path(directory) / SUMMARY_JSON
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result.to_json(timing=timing), indent=2, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def _field(text: str) -> str:
    """A text cell, quoted as RFC 4180 says when it holds a comma, a quote or a newline (a
    tier's name may: the spec only forbids whitespace)."""
    if "," in text or '"' in text or "\n" in text:
        return '"' + text.replace('"', '""') + '"'
    return text


class RequestsCsv:
    """``requests.csv``, written as the simulation goes: the header once, then one row per
    finished request, flushed every :data:`CSV_BLOCK_ROWS` rows and on :meth:`close`.

    Use it as a context manager, or call :meth:`close`. Latencies are in seconds with
    microsecond resolution; a request that got no first token has empty ``ttft_s`` and
    ``itl_s``; ``fallback_reasons`` joins the reasons it left tiers with ``;``
    (``on-prem:503;cloud:timeout``).
    """

    __slots__ = ("_file", "_pending", "path", "rows")

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO | None = self.path.open("w", encoding="utf-8", newline="")
        self._pending: list[str] = [",".join(REQUESTS_COLUMNS) + "\n"]
        self.rows = 0

    def write(  # noqa: PLR0917 - once per request: positional is the cheapest call
        self,
        arrival_s: float,
        tier: str,
        status: int,
        prompt_tokens: int,
        output_tokens: int,
        ttft_s: float | None,
        e2e_s: float,
        itl_s: float | None,
        attempts: int,
        fallback_reasons: Sequence[str] = (),
    ) -> None:
        """One request: where it ended (``tier``, ``status``) and how long it took."""
        self._pending.append(
            f"{arrival_s:.6f},{_field(tier)},{status},{prompt_tokens},{output_tokens},"
            f"{_seconds(ttft_s)},{e2e_s:.6f},{_seconds(itl_s)},{attempts},"
            f"{_field(';'.join(fallback_reasons))}\n"
        )
        self.rows += 1
        if len(self._pending) >= CSV_BLOCK_ROWS:
            self.flush()

    def flush(self) -> None:
        """Write the rows buffered so far."""
        if self._file is None:
            raise ValueError(f"{self.path} is closed")
        self._file.write("".join(self._pending))
        self._pending.clear()

    def close(self) -> None:
        """Write what is left and close the file (again: nothing)."""
        if self._file is not None:
            self.flush()
            self._file.close()
            self._file = None

    def __enter__(self) -> RequestsCsv:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def write_report_html(result: SimResult, directory: str | Path, *, timing: bool = True) -> Path:
    """Write ``DIRECTORY/report.html``: the summary tables and four plots (arrivals against
    capacity, replicas and nodes, cumulative cost, TTFT CDF) as PNGs inside the page, so the
    one file can be mailed or archived. Needs matplotlib (the ``sim`` extra), imported here
    only, so that commands that write no report do not pay for it."""
    # Lazy: matplotlib takes a good part of a second to import.
    from tiergate.sim.outputs.plots import figures  # noqa: PLC0415

    path = Path(directory) / REPORT_HTML
    path.parent.mkdir(parents=True, exist_ok=True)
    page = report_html(result, figures(result), timing=timing)
    path.write_text(page, encoding="utf-8")
    return path
