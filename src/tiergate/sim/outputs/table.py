"""The simulation's summary as tables: per tier what it served, cost and how fast, the SLO line
and the fleet's events.

The rows are built once, as text, by the ``*_table`` functions; :func:`render_summary` lays them
out with rich for the terminal and ``report.html`` lays out the very same rows in HTML, so the
two never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tiergate.sim.result import SimEvent, SimResult

# The events a summary lists, from the start and from the end of those kept.
EVENTS_SHOWN = 5


@dataclass(frozen=True, slots=True)
class TextTable:
    """A table as text: its title, headers and rows. The first ``text_columns`` columns are
    names, left-aligned; the others are figures, right-aligned."""

    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    text_columns: int = 1


def seconds_text(value: float | None) -> str:
    """A latency as people read it: milliseconds under a second, seconds above."""
    if value is None:
        return "-"
    if value < 0.1:
        return f"{value * 1e3:.1f} ms"
    if value < 1:
        return f"{value * 1e3:.0f} ms"
    return f"{value:.2f} s"


def clock(seconds: float) -> str:
    """Virtual time since the start of the run: ``HH:MM:SS``, with days in front past one."""
    whole = round(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}d {text}" if days else text


def duration_text(seconds: float) -> str:
    """A span of virtual time in its largest sensible unit."""
    if seconds >= 2 * 86_400:
        return f"{seconds / 86_400:g} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:g} h"
    if seconds >= 120:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _hours(value: float, kind: str) -> str:
    return "-" if kind == "managed" else f"{value:,.2f}"


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {count:,}" for reason, count in sorted(counts.items())) or "-"


def cost_table(result: SimResult) -> TextTable:
    """Per tier: requests, tokens, cost, GPU-hours billed and busy, utilization."""
    headers = (
        "tier",
        "kind",
        "requests",
        "tokens in",
        "tokens out",
        "cost $",
        "$/M tok",
        "GPU-h billed",
        "GPU-h busy",
        "util",
    )
    rows: list[tuple[str, ...]] = []
    for tier in result.tiers:
        per_million = tier.usd_per_million_tokens
        rows.append(
            (
                tier.name,
                tier.kind,
                f"{tier.requests:,}",
                f"{tier.input_tokens:,}",
                f"{tier.output_tokens:,}",
                f"{tier.cost_usd:,.4f}",
                "-" if per_million is None else f"{per_million:,.4f}",
                _hours(tier.gpu_hours_billed, tier.kind),
                _hours(tier.gpu_hours_busy, tier.kind),
                _share(tier.utilization),
            )
        )
    total_tokens = (
        sum(t.input_tokens for t in result.tiers),
        sum(t.output_tokens for t in result.tiers),
    )
    tokens = sum(total_tokens)
    rows.append(
        (
            "total",
            "",
            f"{sum(t.requests for t in result.tiers):,}",
            f"{total_tokens[0]:,}",
            f"{total_tokens[1]:,}",
            f"{result.cost_usd:,.4f}",
            f"{result.cost_usd / tokens * 1e6:,.4f}" if tokens else "-",
            f"{sum(t.gpu_hours_billed for t in result.tiers if t.kind != 'managed'):,.2f}",
            f"{sum(t.gpu_hours_busy for t in result.tiers if t.kind != 'managed'):,.2f}",
            "",
        )
    )
    return TextTable("per tier: traffic and cost", headers, tuple(rows), text_columns=2)


def latency_table(result: SimResult) -> TextTable:
    """Per tier: TTFT and ITL p50/p95/p99 and the requests that left it, by reason."""
    headers = (
        "tier",
        "TTFT p50",
        "TTFT p95",
        "TTFT p99",
        "ITL p50",
        "ITL p95",
        "ITL p99",
        "fell back",
        "fallbacks by reason",
    )
    rows: list[tuple[str, ...]] = []
    for tier in result.tiers:
        ttft = tier.ttft.quantiles()
        itl = tier.itl.quantiles()
        rows.append(
            (
                tier.name,
                *(seconds_text(v) for v in ttft),
                *(seconds_text(v) for v in itl),
                f"{tier.fallbacks:,}",
                _reasons(dict(tier.fallbacks_by_reason)),
            )
        )
    return TextTable("per tier: latency and fallbacks", headers, tuple(rows))


def capacity_table(result: SimResult) -> TextTable | None:
    """Per tier and capacity type (on-demand, spot, on-prem): GPU-hours billed and cost; None
    when no tier has a breakdown."""
    rows = tuple(
        (tier.name, c.capacity_type, f"{c.gpu_hours_billed:,.2f}", f"{c.cost_usd:,.4f}")
        for tier in result.tiers
        for c in tier.by_capacity
    )
    if not rows:
        return None
    return TextTable(
        "per tier and capacity type",
        ("tier", "capacity", "GPU-h billed", "cost $"),
        rows,
        text_columns=2,
    )


def heading_line(result: SimResult) -> str:
    """What was simulated."""
    return (
        f"simulated {duration_text(result.duration_s)} of {result.trace} on {result.fleet}, "
        f"{result.fidelity} level, seed {result.seed}"
    )


def slo_line(result: SimResult) -> str:
    """``SLO TTFT p95 ≤ 2 s: met (p95 1.42 s; 97.1% of requests within 2 s)``."""
    slo = result.slo
    target = f"{slo.ttft_p95_target_s:g} s"
    verdict = "met" if slo.met else "missed"
    return (
        f"SLO TTFT p95 ≤ {target}: {verdict} (p95 {seconds_text(slo.ttft_p95_s)}; "
        f"{_share(slo.attained_share)} of requests within {target})"
    )


def requests_line(result: SimResult) -> str:
    """The requests in, served and failed (by final status)."""
    failed = ", ".join(f"{s} {n:,}" for s, n in sorted(result.failed_by_status.items()))
    unfinished = result.requests_unfinished
    return (
        f"requests: {result.requests_total:,} arrived, {result.requests_served:,} served, "
        f"{result.requests_failed:,} failed"
        + (f" ({failed})" if failed else "")
        + (f", {unfinished:,} still in flight at the end" if unfinished else "")
    )


def cost_line(result: SimResult) -> str:
    return f"total cost ${result.cost_usd:,.4f}"


def price_lines(result: SimResult) -> list[str]:
    """The price each tier was charged at, where the run says."""
    return [f"{tier.name}: {tier.price_note}" for tier in result.tiers if tier.price_note]


def run_line(result: SimResult) -> str:
    """How fast the simulation itself ran (wall time, so it varies between runs)."""
    rate = result.requests_per_wall_s
    speed = "" if rate is None else f": {rate:,.0f} simulated requests/s"
    return f"ran in {result.wall_s:,.1f} s wall{speed}, peak RSS {result.peak_rss_mib:,.0f} MiB"


def event_lines(result: SimResult) -> list[str]:
    """Counts of events by kind, then the first and last few kept."""
    if not result.event_counts and not result.events:
        return ["no scale, node or fault events"]
    counts = ", ".join(f"{kind} {n:,}" for kind, n in sorted(result.event_counts.items()))
    dropped = f" ({result.events_dropped:,} beyond the first kept)" if result.events_dropped else ""
    lines = [f"events: {counts}{dropped}"]
    events = result.events
    shown: Sequence[SimEvent | None]
    if len(events) > 2 * EVENTS_SHOWN:
        shown = (*events[:EVENTS_SHOWN], None, *events[-EVENTS_SHOWN:])
    else:
        shown = events
    for event in shown:
        if event is None:
            lines.append(f"  … {len(events) - 2 * EVENTS_SHOWN:,} more")
        else:
            at = clock(event.at - result.start_s)
            lines.append(f"  {at}  {event.kind:<8} {event.subject:<12} {event.text}")
    return lines


def tables(result: SimResult) -> list[TextTable]:
    """The summary's tables, in the order they are shown."""
    found = [cost_table(result), latency_table(result), capacity_table(result)]
    return [table for table in found if table is not None]


def _rich(table: TextTable) -> Table:
    out = Table(title=table.title, title_justify="left")
    for index, header in enumerate(table.headers):
        out.add_column(header, justify="left" if index < table.text_columns else "right")
    for row in table.rows:
        out.add_row(*row)
    return out


def render_summary(result: SimResult, *, timing: bool = True) -> RenderableType:
    """The summary as rich tables and lines (``timing=False`` leaves out the wall time)."""
    parts: list[RenderableType] = [Text(heading_line(result), style="bold")]
    parts.extend(_rich(table) for table in tables(result))
    for line in price_lines(result):
        parts.append(Text(f"price {line}"))
    parts.append(Text(requests_line(result)))
    parts.append(Text(slo_line(result), style="green" if result.slo.met else "red"))
    parts.append(Text(cost_line(result), style="bold"))
    parts.append(Text("\n".join(event_lines(result))))
    if timing:
        parts.append(Text(run_line(result)))
    return Group(*parts)
