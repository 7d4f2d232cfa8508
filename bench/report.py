"""Results of the gateway benchmark: derived figures, the printed tables and the JSON."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import upstream
from loadgen import LoadRun, WrkResult

GATEWAYS = ("bare-aiohttp", "tiergate", "litellm")
MIB = 1024.0
TIMES = "\u00d7"  # the multiplication sign, spelt out for ruff's RUF001


@dataclass
class CaseResult:
    """One measured wrk run against one target."""

    target: str
    stream: bool
    concurrency: int
    run: LoadRun

    @property
    def label(self) -> str:
        return case_label(self.stream, self.concurrency)


@dataclass
class ServiceStats:
    """Start-up and memory figures of one gateway process tree."""

    ready_s: float
    rss_idle_kib: int
    rss_peak_sampled_kib: int = 0
    hwm_kib: int = 0
    version: str = ""
    log_tracebacks: int = 0
    verified: dict[str, Any] = field(default_factory=dict)


@dataclass
class BenchResults:
    """Everything one run of the harness measured."""

    meta: dict[str, Any]
    services: dict[str, ServiceStats] = field(default_factory=dict)
    cases: list[CaseResult] = field(default_factory=list)

    def get(self, target: str, stream: bool, concurrency: int) -> WrkResult | None:
        for case in self.cases:
            if (case.target, case.stream, case.concurrency) == (target, stream, concurrency):
                return case.run.result
        return None


def case_label(stream: bool, concurrency: int) -> str:
    return f"{'stream' if stream else 'non-stream'} c={concurrency}"


# ----- derived figures ----------------------------------------------------------------


def rps_ratio(
    results: BenchResults, stream: bool, concurrency: int, over: str = "litellm"
) -> float | None:
    """tiergate RPS / ``over``'s RPS (LiteLLM by default) for one case."""
    tiergate = results.get("tiergate", stream, concurrency)
    other = results.get(over, stream, concurrency)
    if tiergate is None or other is None or other.rps == 0:
        return None
    return tiergate.rps / other.rps


def added_latency_ms(results: BenchResults, gateway: str) -> tuple[float, float] | None:
    """(p50, p99) of ``gateway`` minus direct at c=1, non-streaming, in ms."""
    through = results.get(gateway, False, 1)
    direct = results.get("direct", False, 1)
    if through is None or direct is None:
        return None
    return (through.p50_us - direct.p50_us) / 1e3, (through.p99_us - direct.p99_us) / 1e3


def per_chunk_ms(results: BenchResults, gateway: str) -> float | None:
    """(streaming p50 through ``gateway`` - streaming p50 direct) / 20 at c=1, in ms."""
    through = results.get(gateway, True, 1)
    direct = results.get("direct", True, 1)
    if through is None or direct is None:
        return None
    return (through.p50_us - direct.p50_us) / 1e3 / upstream.STREAM_CHUNKS


def derived(results: BenchResults) -> dict[str, Any]:
    """The issue's derived figures, None where a target or case was not run."""
    cases = sorted({(c.stream, c.concurrency) for c in results.cases})
    out: dict[str, Any] = {
        "rps_ratio_tiergate_over_litellm": {
            case_label(s, c): rps_ratio(results, s, c) for s, c in cases
        },
        "rps_ratio_tiergate_over_bare_aiohttp": {
            case_label(s, c): rps_ratio(results, s, c, over="bare-aiohttp") for s, c in cases
        },
    }
    for gateway in GATEWAYS:
        added = added_latency_ms(results, gateway)
        out[f"{gateway}_added_latency_c1_ms"] = (
            {"p50": added[0], "p99": added[1]} if added else None
        )
        out[f"{gateway}_added_ms_per_stream_chunk_c1"] = per_chunk_ms(results, gateway)
    return out


def target_lines(results: BenchResults) -> list[tuple[str, str, bool | None]]:
    """The issue's targets: (target, measured, PASS/MISS or None when not measured)."""
    lines: list[tuple[str, str, bool | None]] = []
    ratio = rps_ratio(results, False, 32)
    tiergate32 = results.get("tiergate", False, 32)
    measured = "n/a"
    if ratio is not None and tiergate32 is not None:
        measured = f"{ratio:.1f}{TIMES} ({tiergate32.rps:,.0f} req/s non-stream)"
    lines.append(
        (
            f"at c=32 ≥ 60{TIMES} LiteLLM RPS (≈5,000 req/s on one core)",
            measured,
            None if ratio is None else ratio >= 60,
        )
    )
    added = added_latency_ms(results, "tiergate")
    for index, (name, limit) in enumerate((("p50", 0.5), ("p99", 1.5))):
        value = None if added is None else added[index]
        lines.append(
            (
                f"added latency at c=1 ≤ {limit} ms {name}",
                "n/a" if value is None else f"{value:+.3f} ms",
                None if value is None else value <= limit,
            )
        )
    chunk = per_chunk_ms(results, "tiergate")
    lines.append(
        (
            "≤ 0.1 ms per streamed chunk",
            "n/a" if chunk is None else f"{chunk:+.4f} ms/chunk",
            None if chunk is None else chunk <= 0.1,
        )
    )
    stats = results.services.get("tiergate")
    if stats is None:
        lines.append(("RSS ≤ 80 MiB", "n/a", None))
        lines.append(("ready ≤ 0.5 s", "n/a", None))
        return lines
    peak = max(stats.hwm_kib, stats.rss_peak_sampled_kib) / MIB
    lines.append(
        (
            "RSS ≤ 80 MiB",
            f"{peak:.1f} MiB peak (VmHWM), {stats.rss_idle_kib / MIB:.1f} MiB idle",
            peak <= 80,
        )
    )
    lines.append(("ready ≤ 0.5 s", f"{stats.ready_s:.3f} s", stats.ready_s <= 0.5))
    return lines


# ----- printing -----------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]], first_width: int = 16) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    widths[0] = max(widths[0], first_width)

    def fmt(row: list[str]) -> str:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        return "  ".join(cells).rstrip()

    return [fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]


def _case_keys(results: BenchResults) -> list[tuple[bool, int]]:
    seen: list[tuple[bool, int]] = []
    for case in results.cases:
        if (case.stream, case.concurrency) not in seen:
            seen.append((case.stream, case.concurrency))
    return sorted(seen)


def _targets(results: BenchResults) -> list[str]:
    return list(dict.fromkeys(case.target for case in results.cases))


def _per_target_table(
    results: BenchResults, cell: Callable[[CaseResult], str], with_ratio: bool
) -> list[str]:
    targets = _targets(results)
    ratio_on = with_ratio and all(g in targets for g in ("tiergate", "litellm"))
    bare_on = with_ratio and all(g in targets for g in ("tiergate", "bare-aiohttp"))
    header = ["case", *targets] + (["tiergate/LiteLLM"] if ratio_on else [])
    header += ["tiergate/bare"] if bare_on else []
    rows: list[list[str]] = []
    for stream, concurrency in _case_keys(results):
        row = [case_label(stream, concurrency)]
        for target in targets:
            found = [
                c
                for c in results.cases
                if (c.target, c.stream, c.concurrency) == (target, stream, concurrency)
            ]
            row.append(cell(found[0]) if found else "-")
        if ratio_on:
            ratio = rps_ratio(results, stream, concurrency)
            row.append("-" if ratio is None else f"{ratio:.1f}{TIMES}")
        if bare_on:
            ratio = rps_ratio(results, stream, concurrency, over="bare-aiohttp")
            row.append("-" if ratio is None else f"{ratio:.2f}{TIMES}")
        rows.append(row)
    return _table(header, rows)


def _few_cycles(case: CaseResult) -> bool:
    """True when under 5 request latencies fit in the run: its RPS then reads low."""
    result = case.run.result
    return result.requests == 0 or result.p50_us * 5 > result.duration_us


def _marks(case: CaseResult) -> str:
    marks = "*" if case.run.result.error_count else ""
    marks += "^" if case.run.listen_overflows else ""
    return marks + ("~" if _few_cycles(case) else "")


def _rps_cell(case: CaseResult) -> str:
    return f"{case.run.result.rps:,.0f}{_marks(case)}"


def _latency_cell(case: CaseResult) -> str:
    result = case.run.result
    if result.requests == 0:
        return f"no reply{_marks(case)}"
    return f"{result.p50_us / 1e3:.3f} / {result.p99_us / 1e3:.3f}{_marks(case)}"


def _cpu_cell(case: CaseResult) -> str:
    cpu = case.run.cpu_percent
    gateway = f"{cpu['gateway']:.0f}" if "gateway" in cpu else "-"
    return f"{gateway} / {cpu.get('upstream', 0):.0f} / {cpu.get('wrk', 0):.0f}"


def _error_lines(results: BenchResults) -> list[str]:
    lines = []
    if any(_few_cycles(case) for case in results.cases):
        lines.append(
            "  ~ under 5 request latencies fit in the run: its RPS reads low and its"
            " latencies are few; a longer --duration measures it better"
        )
    for case in results.cases:
        errors = {k: v for k, v in case.run.result.errors.items() if v}
        if errors:
            detail = ", ".join(f"{k}={v}" for k, v in errors.items())
            lines.append(
                f"  * {case.target} {case.label}: {detail} (of {case.run.result.requests})"
            )
        if case.run.listen_overflows:
            lines.append(
                f"  ^ {case.target} {case.label}: {case.run.listen_overflows} connection(s)"
                " overflowed a listen backlog; each waits for a SYN retransmit (>= 1 s)"
            )
    return lines


def _failure_lines(results: BenchResults) -> list[str]:
    failures: dict[str, str] = results.meta.get("failures", {})
    lines = [f"  ! {name} not measured: {text.splitlines()[0]}" for name, text in failures.items()]
    if results.meta.get("upstream_log_tracebacks"):
        count = results.meta["upstream_log_tracebacks"]
        lines.append(f"  ! the upstream logged {count} tracebacks: see upstream.log")
    return lines


def _service_lines(results: BenchResults) -> list[str]:
    names = list(results.services)
    if not names:
        return []
    stats = [results.services[n] for n in names]
    rows = [
        ["version", *(s.version for s in stats)],
        ["ready (spawn -> 200)", *(f"{s.ready_s:.3f} s" for s in stats)],
        ["RSS idle (after ready)", *(f"{s.rss_idle_kib / MIB:.1f} MiB" for s in stats)],
        ["RSS peak under load", *(f"{s.rss_peak_sampled_kib / MIB:.1f} MiB" for s in stats)],
        ["VmHWM (process tree)", *(f"{s.hwm_kib / MIB:.1f} MiB" for s in stats)],
        ["stream chunks relayed", *(str(s.verified.get("stream_content_chunks")) for s in stats)],
        ["tracebacks in its log", *(str(s.log_tracebacks) for s in stats)],
    ]
    return ["", "Gateway processes", *_table(["", *names], rows, first_width=24)]


def _derived_lines(results: BenchResults) -> list[str]:
    lines = ["", "Derived figures (c=1, vs direct)"]
    for gateway in GATEWAYS:
        added = added_latency_ms(results, gateway)
        chunk = per_chunk_ms(results, gateway)
        if added is None and chunk is None:
            continue
        latency = "n/a" if added is None else f"p50 {added[0]:+.3f} ms, p99 {added[1]:+.3f} ms"
        per_chunk = "n/a" if chunk is None else f"{chunk:+.4f} ms"
        lines.append(f"  {gateway:<9} added latency {latency}; per streamed chunk {per_chunk}")
    return lines if len(lines) > 2 else []


def _target_section(results: BenchResults) -> list[str]:
    lines = ["", "Targets from the issue (printed for comparison, not asserted)"]
    verdicts = {True: "PASS", False: "MISS", None: "n/a"}
    for text, measured, verdict in target_lines(results):
        lines.append(f"  {text:<55} {measured:<48} {verdicts[verdict]}")
    return lines


def render(results: BenchResults) -> str:
    """The full printed report."""
    meta = results.meta
    lines = [
        f"Gateway benchmark: {meta['duration_s']} s per case after {meta['warmup_s']} s warm-up,"
        f" wrk -t1, zero-delay upstream ({upstream.STREAM_CHUNKS}-chunk SSE when streaming)",
        "Pinning: gateway on CPU 0; upstream and wrk on CPU 1"
        " (direct: upstream and wrk share CPU 1, nothing on CPU 0).",
        f"Work folder (configs, logs): {meta['workdir']}",
        "",
        "Throughput (req/s; * errors, ^ listen backlog overflowed, ~ too few request cycles:"
        " see below the tables)",
        *_per_target_table(results, _rps_cell, with_ratio=True),
        "",
        "Latency p50 / p99 (ms)",
        *_per_target_table(results, _latency_cell, with_ratio=False),
        "",
        "CPU during the run (% of one core): gateway / upstream / wrk",
        *_per_target_table(results, _cpu_cell, with_ratio=False),
        *_error_lines(results),
        *_failure_lines(results),
        *_service_lines(results),
        *_derived_lines(results),
        *_target_section(results),
    ]
    return "\n".join(lines)


def to_json(results: BenchResults) -> dict[str, Any]:
    """All figures, raw and derived, as plain data."""
    cases = []
    for case in results.cases:
        entry = asdict(case)
        entry["label"] = case.label
        entry["run"]["result"]["rps"] = case.run.result.rps
        cases.append(entry)
    return {
        "meta": results.meta,
        "services": {name: asdict(s) for name, s in results.services.items()},
        "cases": cases,
        "derived": derived(results),
        "targets": [
            {"target": text, "measured": measured, "pass": verdict}
            for text, measured, verdict in target_lines(results)
        ],
    }
