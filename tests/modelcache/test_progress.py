"""Progress: JSON lines at most once per second off a terminal; the summary table or line."""

from __future__ import annotations

import io
import json

import pytest

from tiergate.modelcache.fetch import FetchSummary
from tiergate.modelcache.progress import (
    JsonLinesProgress,
    RichProgress,
    make_progress,
    print_summary,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_json_lines_at_most_one_per_interval() -> None:
    stream, clock = io.StringIO(), Clock()
    progress = JsonLinesProgress(stream, clock=clock)
    progress.phase("download", 10_000_000)
    for _ in range(10):  # ten updates within 0.9 s: no line
        clock.now += 0.09
        progress.advance(100_000)
    assert stream.getvalue() == ""
    clock.now += 0.1
    progress.advance(1_000_000)  # 2 MB in 1 s
    clock.now += 0.5
    progress.advance(1_000_000)  # half a second later: still the one line
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines == [
        {
            "event": "progress",
            "phase": "download",
            "bytes": 2_000_000,
            "total": 10_000_000,
            "rate_mb_s": 2.0,
            "eta_s": 4.0,
        }
    ]


def test_json_chosen_off_a_terminal() -> None:
    assert isinstance(make_progress(json_lines=False, stream=io.StringIO()), JsonLinesProgress)


def test_rich_progress_draws_each_phase_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    progress = RichProgress()
    progress.phase("download", 100)
    progress.advance(100)
    progress.phase("verify", 100)
    progress.close()
    drawn = capsys.readouterr()
    assert drawn.out == ""
    assert "download" in drawn.err
    assert "verify" in drawn.err


SUMMARY = FetchSummary(
    status="fetched",
    source="s3://models/qwen",
    dest="/models",
    digest="d" * 64,
    files=3,
    bytes=4_000_000_000,
    bytes_transferred=4_000_000_000,
    seconds=2.0,
    retries=1,
    files_verified=3,
)


def test_summary_as_json_line() -> None:
    stream = io.StringIO()
    print_summary(SUMMARY, json_lines=True, stream=stream)
    line = json.loads(stream.getvalue())
    assert line["event"] == "summary"
    assert line["mb_per_s"] == 2000.0
    assert (line["bytes"], line["retries"], line["files_verified"]) == (4_000_000_000, 1, 3)


def test_summary_as_table() -> None:
    stream = io.StringIO()
    print_summary(SUMMARY, json_lines=False, stream=stream)
    text = stream.getvalue()
    assert "2000.0 MB/s" in text
    assert "3.7 GiB" in text
    assert "s3://models/qwen" in text
