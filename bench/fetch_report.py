"""The report of ``fetch.py``: what a run measured, the table per part, the verdict, JSON."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

MB, GB = 1e6, 1e9
TARGET = 0.90  # the issue's: >= 90% of the fastest verified anchor's throughput


@dataclass
class Measured:
    """One command (or group of commands): wall and CPU seconds, and whether its result was
    right (every file present with the manifest's sha256, or the tool said so)."""

    wall_s: float
    client_cpu_s: float
    server_cpu_s: float = 0.0
    ok: bool = True
    note: str = ""
    output: dict[str, Any] = field(default_factory=dict)


@dataclass
class Part:
    """One part (HTTP or S3): its ways' runs, round by round, and the cached-restart runs."""

    name: str
    server: str
    model_bytes: int
    files: int
    runs: dict[str, list[Measured]] = field(default_factory=dict)
    hash_runs: dict[str, dict[str, list[Measured]]] = field(default_factory=dict)
    checks: dict[str, str] = field(default_factory=dict)
    restart: dict[str, Measured] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Row:
    """One line of a part's table: a way (or an anchor plus a separate hash pass), its wall
    seconds per round and the medians of its CPU seconds."""

    name: str
    check: str
    walls: list[float]
    client_cpu: float
    server_cpu: float
    ok: bool
    note: str
    anchor: bool
    verified: bool


def rows(part: Part) -> list[Row]:
    """The table's lines: each way, and each anchor plus each of its separate hash passes."""
    found: list[Row] = []
    for name, runs in part.runs.items():
        tiergate = name.startswith("tiergate")  # the first such row is the one judged
        check = part.checks[name]
        found.append(_row(name, check, runs, anchor=not tiergate, verified=check != "none"))
        for tool, hashes in part.hash_runs.get(name, {}).items():
            combined = [
                Measured(
                    run.wall_s + h.wall_s,
                    run.client_cpu_s + h.client_cpu_s,
                    run.server_cpu_s,
                    ok=run.ok and h.ok,
                    note=run.note or h.note,
                )
                for run, h in zip(runs, hashes, strict=True)
            ]
            found.append(_row(f"{name} + {tool}", "separate pass", combined, True, True))
    return found


def _row(name: str, check: str, runs: list[Measured], anchor: bool, verified: bool) -> Row:
    return Row(
        name=name,
        check=check,
        walls=[run.wall_s for run in runs],
        client_cpu=statistics.median(run.client_cpu_s for run in runs),
        server_cpu=statistics.median(run.server_cpu_s for run in runs),
        ok=all(run.ok for run in runs),
        note="; ".join(sorted({run.note for run in runs if run.note})),
        anchor=anchor,
        verified=verified,
    )


def render_part(part: Part, server_cpu_label: str) -> list[str]:
    gb = part.model_bytes / GB
    lines = [
        f"{part.name}: {part.server}; {part.model_bytes / (1 << 30):.2f} GiB in {part.files} "
        f"files; median of {len(next(iter(part.runs.values()), []))} round(s)",
    ]
    header = (
        f"{'way':<40} {'sha256 check':<15} {'wall s':>7} {'(min-max)':>13} {'MB/s':>8} "
        f"{'client CPU s/GB':>16} {server_cpu_label + ' CPU s/GB':>16}  result"
    )
    lines += [header, "-" * len(header)]
    table = rows(part)
    for row in table:
        wall = statistics.median(row.walls)
        spread = f"({min(row.walls):.2f}-{max(row.walls):.2f})"
        lines.append(
            f"{row.name:<40} {row.check:<15} {wall:>7.2f} {spread:>13} "
            f"{part.model_bytes / MB / wall:>8.0f} {row.client_cpu / gb:>16.2f} "
            f"{row.server_cpu / gb:>16.2f}  {'ok' if row.ok else 'FAILED: ' + row.note}"
        )
    lines += _verdict(part, table)
    if part.restart:
        lines.append("")
        lines.append("cached restart (tiergate fetch into its complete DEST; median of 3):")
        for name, run in part.restart.items():
            inner = run.output.get("seconds")
            inside = f", {inner:.3f} s inside tiergate" if isinstance(inner, float) else ""
            status = "" if run.ok else f"  FAILED: {run.note}"
            lines.append(f"  {name:<40} {run.wall_s:>6.2f} s wall{inside}{status}")
    lines += [f"note: {note}" for note in part.notes]
    return lines


def _verdict(part: Part, table: list[Row]) -> list[str]:
    tiergate = next((row for row in table if not row.anchor), None)
    verified = [row for row in table if row.anchor and row.verified and row.ok]
    unverified = [row for row in table if row.anchor and not row.verified and row.ok]
    if tiergate is None or not verified:
        return ["target: not judged (tiergate or every verified anchor missing)"]

    def rate(row: Row) -> float:
        return part.model_bytes / MB / statistics.median(row.walls)

    best = max(verified, key=rate)
    ratio = rate(tiergate) / rate(best) if tiergate.ok else 0.0
    lines = [
        "",
        f"tiergate / fastest anchor with sha256 verification ({best.name}): {ratio:.2f} "
        f"(target >= {TARGET:.2f}): {'MET' if ratio >= TARGET else 'MISSED'}"
        + ("" if tiergate.ok else " (tiergate failed)"),
    ]
    if unverified:
        fastest = max(unverified, key=rate)
        lines.append(
            f"tiergate / fastest anchor without verification ({fastest.name}): "
            f"{rate(tiergate) / rate(fastest):.2f} (for reference)"
        )
    cpu = tiergate.client_cpu / min(row.client_cpu for row in verified)
    lines.append(f"tiergate client CPU / lowest verified anchor's: {cpu:.2f}")
    return lines


def to_json(parts: list[Part], machine: dict[str, Any]) -> dict[str, Any]:
    return {
        "machine": machine,
        "parts": [
            {
                **{k: v for k, v in asdict(part).items() if k not in ("runs", "hash_runs")},
                "runs": {name: [asdict(run) for run in runs] for name, runs in part.runs.items()},
                "hash_runs": {
                    name: {tool: [asdict(run) for run in runs] for tool, runs in tools.items()}
                    for name, tools in part.hash_runs.items()
                },
                "rows": [asdict(row) for row in rows(part)],
            }
            for part in parts
        ],
    }
