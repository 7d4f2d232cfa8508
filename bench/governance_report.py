"""The printed report and the JSON of ``bench/governance.py``."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import upstream
from governance_ledger import YIELD_EVERY, StoreRun

TIMES = "\u00d7"  # the multiplication sign, spelt out for ruff's RUF001
MINUS = "\u2212"
OFF = "off"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(cells).rstrip()

    return [fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}{TIMES}" if base else "-"


def _variants(cases: dict[str, dict[str, Any]]) -> list[str]:
    return list(next(iter(cases.values())).keys()) if cases else []


def _with_ratios(
    cases: dict[str, dict[str, Any]], value: Callable[[Any], float], fmt: str
) -> list[str]:
    """One row per case: each variant's figure, and after each governed one its ratio to off."""
    variants = _variants(cases)
    header = ["case"]
    for name in variants:
        header += [name] if name == OFF else [name, f"{name}/off"]
    rows = []
    for label, figures in cases.items():
        base = value(figures[OFF])
        row = [label]
        for name in variants:
            figure = value(figures[name])
            star = "*" if figures[name].errors else ""
            row += [format(figure, fmt) + star]
            if name != OFF:
                row.append(_ratio(figure, base))
        rows.append(row)
    return _table(header, rows)


def _latency(cases: dict[str, dict[str, Any]]) -> list[str]:
    variants = _variants(cases)
    rows = [
        [label, *(f"{figures[n].p50_ms:.3f} / {figures[n].p99_ms:.3f}" for n in variants)]
        for label, figures in cases.items()
    ]
    return _table(["case", *variants], rows)


def _added(cases: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for label, figures in cases.items():
        if not label.endswith(" c=1"):
            continue
        off = figures[OFF]
        parts = [
            f"{name} {f.p50_ms - off.p50_ms:+.3f} ms p50, {f.p99_ms - off.p99_ms:+.3f} ms p99"
            for name, f in figures.items()
            if name != OFF
        ]
        lines.append(f"  {label.removesuffix(' c=1'):<10}  " + "; ".join(parts))
    return lines


def _median(runs: list[StoreRun], value: Callable[[StoreRun], float | None]) -> float | None:
    values = [v for v in (value(r) for r in runs) if v is not None]
    return statistics.median(values) if values else None


LEDGER_ROWS: list[tuple[str, Callable[[StoreRun], float | None], str]] = [
    ("records/s", lambda r: r.records_per_s, ",.0f"),
    ("wall per run (s)", lambda r: r.wall_s, ".3f"),
    (
        f"record(): µs per call, median of {YIELD_EVERY}-call batches",
        lambda r: r.record_us_median,
        ".2f",
    ),
    ("record(): µs per call, mean over the run", lambda r: r.record_us_mean, ".2f"),
    ("harness process CPU per record (µs)", lambda r: 1e6 * r.client_cpu_s / r.records, ".1f"),
    (
        "server CPU per record (µs)",
        lambda r: None if r.server_cpu_s is None else 1e6 * r.server_cpu_s / r.records,
        ".1f",
    ),
    ("group commits per run", lambda r: r.commits, ".0f"),
    ("records dropped per run", lambda r: r.dropped, ".0f"),
]


COMPARED = {name for name, _, _ in LEDGER_ROWS[:4]}


def _ledger(meta: dict[str, Any], ledger: dict[str, Any]) -> list[str]:
    sqlite_runs: list[StoreRun] = ledger["sqlite"]
    pg_runs: list[StoreRun] = ledger["postgres"]
    lines = [
        f"Ledger write throughput: {meta['records']:,} records per run, record() each then"
        f" flush(); median of {len(sqlite_runs)} run(s) per store, SQLite and PostgreSQL"
        " interleaved"
    ]
    header = ["", "SQLite", "PostgreSQL", "PostgreSQL/SQLite"]
    rows = []
    for name, value, fmt in LEDGER_ROWS:
        lite = _median(sqlite_runs, value)
        pg = _median(pg_runs, value)
        ratio = _ratio(pg, lite) if name in COMPARED and lite and pg is not None else ""
        rows.append(
            [
                name,
                "-" if lite is None else format(lite, fmt),
                "-" if pg is None else format(pg, fmt),
                ratio,
            ]
        )
    lines += _table(header, rows)
    if ledger.get("postgres_skipped"):
        lines.append(f"PostgreSQL left out: {ledger['postgres_skipped']}")
    return lines


def render(results: dict[str, Any]) -> str:
    """The full printed report."""
    meta = results["meta"]
    cases = results.get("cases", {})
    versions = [
        meta["tiergate"],
        meta["wrk"],
        f"SQLite {meta['sqlite']}",
        results.get("ledger", {}).get("postgres_version", "PostgreSQL -"),
        meta.get("redis", "redis-server -"),
        f"asyncpg {meta['asyncpg']}",
        f"redis-py {meta['redis_py']}",
    ]
    lines = [
        "Governance benchmark: keys + budgets + rate limits + ledger, on vs off, in one run",
        f"Machine: {meta['machine']}; Python {meta['python']}",
        "Versions: " + "; ".join(versions),
        f"Pinning: gateways on CPU {meta['pinning']['gateways']} (all up, one loaded at a time);"
        f" upstream, wrk and Redis on CPU {meta['pinning']['upstream_wrk_redis']}",
        f"Each case: {meta['rounds']} round(s) {TIMES} {meta['duration_s']} s per variant after"
        f" {meta['warmup_s']} s warm-up, order alternating per round; wrk -t1, chat.lua,"
        f" zero-delay upstream ({upstream.STREAM_CHUNKS}-chunk SSE when streaming)",
        f"Work folder (fleets, logs, ledgers): {meta['workdir']}",
    ]
    if meta.get("redis_skipped"):
        lines.append(f"on+redis left out: {meta['redis_skipped']}")
    if cases:
        lines += ["", "Throughput (req/s; * = some requests failed)"]
        lines += _with_ratios(cases, lambda f: f.rps, ",.0f")
        lines += ["", "Latency p50 / p99 (ms, median over rounds)"]
        lines += _latency(cases)
        lines += ["", "Gateway CPU time per request (µs)"]
        lines += _with_ratios(cases, lambda f: f.cpu_us_per_request, ".0f")
        lines += ["", f"Added by governance at c=1 (on {MINUS} off):", *_added(cases)]
    rows = results.get("ledger_rows", {})
    if rows:
        counts = "; ".join(
            f"{name} {r['rows']:,} rows for {r['requests_sent']:,} requests"
            for name, r in rows.items()
        )
        lines += ["", f"Gateway ledgers after SIGTERM: {counts}"]
    broken = {name: n for name, n in results.get("tracebacks", {}).items() if n}
    if broken:
        lines.append(f"Tracebacks in gateway logs: {broken} (see the work folder)")
    if "ledger" in results:
        lines += ["", *_ledger(meta, results["ledger"])]
    lines += ["", *NOTES]
    return "\n".join(lines)


NOTES = [
    "Notes:",
    "- on: keys: required; one key with its own budget, rpm and tpm; a team budget and a team",
    "  rate limit; none ever reached. SQLite ledger, flushMs 200, keyCacheMs 2000. on+redis: the",
    "  same with budgets and limits in Redis (a Lua script each to rate-limit, reserve, settle).",
    "- req/s: requests over measured seconds, all rounds. Latency: wrk's (client side), the",
    "  median of the rounds' p50 and p99. Gateway CPU: the gateway process's user + system time",
    "  during the wrk runs over the requests wrk counted (SQLite writer thread included).",
    "- Ledger rows: after the gateways stopped (SIGTERM writes what is queued). Requests: wrk's",
    "  counts, warm-ups included, plus the checks; rows also hold the requests in flight at each",
    "  run's end, which wrk does not count.",
    "- Ledger part: the stores' own classes and defaults, a fresh file or database per run. Wall",
    "  time runs from the first record() until flush() returns; the caller yields to the event",
    f"  loop every {YIELD_EVERY} calls. The mean µs per record() includes time the SQLite writer",
    "  thread held the GIL; the median batch mostly does not. Harness CPU: caller + SQLite writer",
    "  thread, or caller + asyncpg; server CPU: PostgreSQL's processes. The throwaway PostgreSQL",
    "  runs with fsync=off and synchronous_commit=off; SQLite in WAL with synchronous=NORMAL",
    "  (no fsync per commit either), in the work folder.",
    "- The machine is shared and noisy: compare ratios within one run, not figures across runs.",
]


def to_json(results: dict[str, Any]) -> dict[str, Any]:
    """Every figure as plain data."""
    out: dict[str, Any] = {k: v for k, v in results.items() if k not in ("cases", "ledger")}
    out["cases"] = {
        label: {name: f.to_json() for name, f in figures.items()}
        for label, figures in results.get("cases", {}).items()
    }
    if "ledger" in results:
        ledger = dict(results["ledger"])
        for store in ("sqlite", "postgres"):
            ledger[store] = [run.to_json() for run in ledger[store]]
        out["ledger"] = ledger
    return out
