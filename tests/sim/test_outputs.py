"""The simulator's outputs from a result built by hand: summary.json, requests.csv, report.html
and the summary table show the figures given, and the same result gives the same bytes."""

from __future__ import annotations

import base64
import csv
import dataclasses
import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from tiergate.sim.loop import EventLoop
from tiergate.sim.outputs import (
    REQUESTS_COLUMNS,
    RequestsCsv,
    render_summary,
    write_report_html,
    write_summary_json,
)
from tiergate.sim.outputs.files import CSV_BLOCK_ROWS
from tiergate.sim.outputs.progress import SimProgress
from tiergate.sim.result import (
    CapacityCost,
    EventLog,
    Series,
    SimResult,
    SloResult,
    TierResult,
)
from tiergate.sim.stats import LogHistogram

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PRICE_NOTE = "Qwen3-32B on Bedrock $0.15/$0.60 per M (AWS Bedrock pricing, 2025-08)"


def histogram(values: list[float]) -> LogHistogram:
    out = LogHistogram()
    for value in values:
        out.add(value)
    return out


def itl(value: float, count: int) -> LogHistogram:
    out = LogHistogram()
    out.add_many(value, count)
    return out


def tiers() -> tuple[TierResult, ...]:
    return (
        TierResult(
            name="on-prem",
            kind="on-prem",
            requests=3,
            input_tokens=3000,
            output_tokens=300,
            cost_usd=2.5,
            gpu_hours_billed=2.0,
            gpu_hours_busy=0.5,
            ttft=histogram([0.2, 0.4, 1.0]),
            itl=itl(0.02, 100),
            fallbacks_by_reason={"saturated": 2, "503": 1},
            by_capacity=(CapacityCost("on-prem", 2.0, 2.5),),
        ),
        TierResult(
            name="cloud",
            kind="cloud",
            requests=2,
            input_tokens=2000,
            output_tokens=200,
            cost_usd=1.2,
            gpu_hours_billed=1.0,
            gpu_hours_busy=0.6,
            ttft=histogram([1.5, 3.0]),
            itl=itl(0.03, 50),
            fallbacks_by_reason={"timeout": 1},
            by_capacity=(CapacityCost("spot", 0.5, 0.4), CapacityCost("on-demand", 0.5, 0.8)),
        ),
        TierResult(
            name="bedrock",
            kind="managed",
            requests=1,
            input_tokens=1000,
            output_tokens=100,
            cost_usd=0.00021,  # 1000 * 0.15 / 1e6 + 100 * 0.60 / 1e6
            gpu_hours_billed=0.0,
            gpu_hours_busy=0.0,
            ttft=histogram([0.8]),
            itl=itl(0.01, 10),
            price_note=PRICE_NOTE,
        ),
    )


def sim_result() -> SimResult:
    tier_results = tiers()
    series = Series.empty(0.0, 60.0, [t.name for t in tier_results], pools=["gpu-spot"])
    for minute in range(4):
        series.arrivals_per_s.append(0.05 + 0.01 * minute)
        series.capacity_per_s["on-prem"].append(0.04)
        series.capacity_per_s["cloud"].append(0.02 * minute)
        series.capacity_per_s["bedrock"].append(50.0)  # the quota: far off the GPU scale
        series.replicas["on-prem"].append(1)
        series.replicas["cloud"].append(min(minute, 2))
        series.replicas["bedrock"].append(0)
        series.nodes["on-prem"].append(1)
        series.nodes["cloud"].append(min(minute + 1, 2))
        series.nodes["bedrock"].append(0)
        series.pool_nodes["gpu-spot"].append(min(minute + 1, 2))
        series.cost_usd["on-prem"].append(2.5 * minute / 3)
        series.cost_usd["cloud"].append(1.2 * minute / 3)
        series.cost_usd["bedrock"].append(0.00007 * minute)
    log = EventLog(capacity=2)
    log.add(60.0, "scale", "cloud", "replicas 0 -> 1 (queue 3 > target 2)")
    log.add(61.0, "node", "gpu-spot", "launch g6e.xlarge spot in us-east-1a")
    log.add(120.0, "scale", "cloud", "replicas 1 -> 2")
    return SimResult(
        fleet="examples/hybrid.yaml",
        trace="azure-code (7 requests)",
        seed=15,
        fidelity="iteration",
        start_s=0.0,
        duration_s=240.0,
        wall_s=0.5,
        requests_total=7,
        requests_served=6,
        failed_by_status={"503": 1},
        tiers=tier_results,
        slo=SloResult.of(tier_results, failed=1),
        series=series,
        events=tuple(log.events),
        events_dropped=log.dropped,
        event_counts=log.counts,
        peak_rss_mib=87.4,
    )


def test_slo_counts_failed_requests_as_missed() -> None:
    slo = sim_result().slo
    # First tokens 0.2, 0.4, 1.0, 1.5, 3.0, 0.8 and one failed request: 5 of 7 within 2 s.
    assert slo.attained_share == pytest.approx(5 / 7)
    # Sorted 0.2 0.4 0.8 1.0 1.5 3.0: position 0.95 * 5 = 4.75, 1.5 + 0.75 * 1.5 = 2.625 s.
    assert slo.ttft_p95_s == pytest.approx(2.625, rel=0.01)
    assert slo.met is False
    assert slo.tier_p95_s["bedrock"] == 0.8


def test_summary_json_holds_the_figures(tmp_path: Path) -> None:
    path = write_summary_json(sim_result(), tmp_path / "out")
    assert path == tmp_path / "out" / "summary.json"
    data = json.loads(path.read_text())
    assert data["fleet"] == "examples/hybrid.yaml"
    assert data["seed"] == 15
    assert data["fidelity"] == "iteration"
    assert data["durationSeconds"] == 240.0
    assert data["requests"] == {
        "total": 7,
        "served": 6,
        "failed": 1,
        "unfinished": 0,
        "failedByStatus": {"503": 1},
    }
    assert data["costUsd"] == pytest.approx(3.70021)  # 2.5 + 1.2 + 0.00021
    on_prem, cloud, bedrock = data["tiers"]
    assert [t["name"] for t in data["tiers"]] == ["on-prem", "cloud", "bedrock"]
    assert on_prem["utilization"] == 0.25  # 0.5 busy of 2.0 billed GPU-hours
    assert on_prem["usdPerMillionTokens"] == pytest.approx(757.575758)  # 2.5 / 3300 * 1e6
    assert on_prem["fallbacksByReason"] == {"503": 1, "saturated": 2}
    assert on_prem["itl"]["p50Seconds"] == 0.02
    assert on_prem["ttft"]["count"] == 3
    assert cloud["byCapacity"] == [
        {"capacityType": "spot", "gpuHoursBilled": 0.5, "costUsd": 0.4},
        {"capacityType": "on-demand", "gpuHoursBilled": 0.5, "costUsd": 0.8},
    ]
    assert bedrock["utilization"] is None  # managed: no GPU-hours of ours
    assert bedrock["priceNote"] == PRICE_NOTE
    assert data["slo"]["met"] is False
    assert data["slo"]["attainedShare"] == pytest.approx(0.714286)
    # Three events, two kept: the counts still see all three.
    assert data["eventCounts"] == {"node": 1, "scale": 2}
    assert data["eventsDropped"] == 1
    assert data["events"][1] == {
        "at": 61.0,
        "kind": "node",
        "subject": "gpu-spot",
        "text": "launch g6e.xlarge spot in us-east-1a",
    }
    assert data["series"]["stepSeconds"] == 60.0
    assert data["series"]["replicas"]["cloud"] == [0, 1, 2, 2]
    assert data["series"]["poolNodes"]["gpu-spot"] == [1, 2, 2, 2]
    assert data["run"] == {"wallSeconds": 0.5, "requestsPerWallSecond": 14.0, "peakRssMib": 87.4}


def test_summary_json_without_timing_is_the_same_for_another_run(tmp_path: Path) -> None:
    slower = dataclasses.replace(sim_result(), wall_s=9.0, peak_rss_mib=300.0)
    first = write_summary_json(sim_result(), tmp_path / "a", timing=False).read_bytes()
    second = write_summary_json(slower, tmp_path / "b", timing=False).read_bytes()
    assert first == second
    assert "run" not in json.loads(first)


def test_requests_csv_has_the_header_and_one_row_per_request(tmp_path: Path) -> None:
    path = tmp_path / "requests.csv"
    with RequestsCsv(path) as out:
        out.write(12.5, "cloud", 200, 1200, 80, 0.4321, 2.0, 0.0198, 2, ("on-prem:saturated",))
        out.write(13.0, "bedrock", 503, 900, 0, None, 0.25, None, 3, ("on-prem:503", "cloud:429"))
        out.write(14.0, "odd,name", 200, 10, 1, 0.1, 0.1, None, 1)
    with path.open(newline="") as file:
        rows = list(csv.reader(file))
    assert tuple(rows[0]) == REQUESTS_COLUMNS
    assert rows[1] == [
        "12.500000",
        "cloud",
        "200",
        "1200",
        "80",
        "0.432100",
        "2.000000",
        "0.019800",
        "2",
        "on-prem:saturated",
    ]
    # No first token: empty TTFT and ITL; reasons in the order the tiers were left.
    assert rows[2][5] == ""
    assert rows[2][7] == ""
    assert rows[2][9] == "on-prem:503;cloud:429"
    assert rows[3][1] == "odd,name"  # quoted, so it stays one cell
    assert rows[3][9] == ""
    assert len(rows) == 4


def test_requests_csv_streams_in_blocks_and_keeps_every_row(tmp_path: Path) -> None:
    path = tmp_path / "requests.csv"
    out = RequestsCsv(path)
    for index in range(CSV_BLOCK_ROWS + 10):
        out.write(float(index), "on-prem", 200, 100, 10, 0.1, 0.5, 0.04, 1)
    # One block is on disk before the end; the rest arrives on close.
    assert path.read_text().count("\n") == CSV_BLOCK_ROWS
    out.close()
    out.close()  # closing twice is harmless
    assert path.read_text().count("\n") == CSV_BLOCK_ROWS + 11  # the header and every row
    assert out.rows == CSV_BLOCK_ROWS + 10


def embedded_pngs(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_report_html_embeds_four_plots_and_the_tables(tmp_path: Path) -> None:
    path = write_report_html(sim_result(), tmp_path)
    assert path == tmp_path / "report.html"
    page = path.read_text()
    pngs = embedded_pngs(page)
    assert len(pngs) == 4
    assert all(png.startswith(PNG_SIGNATURE) for png in pngs)
    for name in ("on-prem", "cloud", "bedrock", "gpu-spot"):
        assert name in page
    assert "SLO TTFT p95 ≤ 2 s: missed" in page
    assert "Qwen3-32B on Bedrock $0.15/$0.60 per M" in page
    assert "<td>757.5758</td>" in page  # on-prem's $ per million tokens
    assert "http" not in page  # self-contained: nothing to fetch


def test_report_of_a_run_with_no_samples_still_has_its_four_plots(tmp_path: Path) -> None:
    empty = TierResult("cloud", "cloud", 0, 0, 0, 0.0, 0.0, 0.0, LogHistogram(), LogHistogram())
    result = dataclasses.replace(
        sim_result(),
        tiers=(empty,),
        slo=SloResult.of((empty,)),
        series=Series.empty(0.0, 60.0, ["cloud"]),
        events=(),
        event_counts={},
        events_dropped=0,
    )
    pngs = embedded_pngs(write_report_html(result, tmp_path).read_text())
    assert len(pngs) == 4
    assert all(png.startswith(PNG_SIGNATURE) for png in pngs)


def test_the_same_result_writes_the_same_bytes(tmp_path: Path) -> None:
    first = write_report_html(sim_result(), tmp_path / "a").read_bytes()
    second = write_report_html(sim_result(), tmp_path / "b").read_bytes()
    assert first == second
    first_json = write_summary_json(sim_result(), tmp_path / "a").read_bytes()
    assert first_json == write_summary_json(sim_result(), tmp_path / "b").read_bytes()


def test_summary_table_shows_the_figures_given() -> None:
    result = dataclasses.replace(
        sim_result(), slo=SloResult(2.0, 1.42, 0.971, True, {"on-prem": 0.9})
    )
    console = Console(record=True, width=220, highlight=False, emoji=False)
    console.print(render_summary(result))
    text = console.export_text()
    assert "simulated 4 min of azure-code (7 requests) on examples/hybrid.yaml" in text
    assert "SLO TTFT p95 ≤ 2 s: met (p95 1.42 s; 97.1% of requests within 2 s)" in text
    on_prem = next(line for line in text.splitlines() if "│ on-prem " in line and "3,000" in line)
    for figure in ("3,000", "300", "2.5000", "757.5758", "2.00", "0.50", "25.0%"):
        assert figure in on_prem
    latency = next(line for line in text.splitlines() if "│ on-prem " in line and "ms" in line)
    # ITL: 100 gaps of 20 ms; TTFT p99 between 0.4 and 1.0 s at 0.98 of the way: 988 ms.
    assert "20.0 ms" in latency
    assert "988 ms" in latency
    assert "503 1, saturated 2" in latency
    assert "requests: 7 arrived, 6 served, 1 failed (503 1)\n" in text
    assert "price bedrock: Qwen3-32B on Bedrock $0.15/$0.60 per M" in text
    assert "total cost $3.7002" in text
    assert "events: node 1, scale 2 (1 beyond the first kept)" in text
    assert "00:01:01  node     gpu-spot     launch g6e.xlarge spot in us-east-1a" in text
    assert "ran in 0.5 s wall: 14 simulated requests/s, peak RSS 87 MiB" in text
    console = Console(record=True, width=220)
    console.print(render_summary(result, timing=False))
    assert "ran in" not in console.export_text()


def test_progress_follows_virtual_time_and_lets_the_loop_end() -> None:
    out = io.StringIO()
    console = Console(file=out, width=160, force_terminal=False)
    loop = EventLoop()
    arrived = [0]
    with SimProgress(0.0, 3600.0, console=console) as progress:
        progress.attach(loop, lambda: arrived[0], every_s=600.0)
        loop.at(1800.0, lambda: arrived.__setitem__(0, 1234))
        loop.run(until=5000.0)
    text = out.getvalue()
    # Updates at 0, 600, ..., 3600 s: the last shows the whole hour and the requests then.
    assert "01:00:00 / 60 min" in text
    assert "1,234 requests" in text


def test_progress_ticks_stop_at_the_end_of_the_run() -> None:
    loop = EventLoop()
    progress = SimProgress(0.0, 1000.0, console=Console(file=io.StringIO()))
    progress.attach(loop, lambda: 0, every_s=300.0)
    loop.run()  # would never return if the ticks went on past the end
    assert loop.now == 1000.0  # ticks at 0, 300, 600, 900, then one at the end


def test_requests_still_in_flight_at_the_end_are_said() -> None:
    # 9 arrived, 6 served, 1 failed: 2 were still being served when the time ran out.
    result = dataclasses.replace(sim_result(), requests_total=9)
    assert result.requests_unfinished == 2
    console = Console(record=True, width=220)
    console.print(render_summary(result))
    assert "1 failed (503 1), 2 still in flight at the end" in console.export_text()
