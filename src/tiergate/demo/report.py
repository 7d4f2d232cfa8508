"""The demo's final summary: per tier, what it served and what it cost, against the cost of
sending everything to the managed API.

Requests, tokens, failed attempts and fallbacks come from the gateway's counters (what the
ledger would bill); time-to-first-token percentiles from the client's own exact measurements
(in trace time, as in the live view).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tiergate.demo.metrics import GatewaySample, cost, percentile
from tiergate.demo.replay import CANCELLED, Outcome
from tiergate.demo.view import Event, TierInfo, seconds_text, trace_clock


@dataclass(frozen=True, slots=True)
class TierSummary:
    tier: TierInfo
    requests: int  # answered with 200
    input_tokens: int
    output_tokens: int
    cost_usd: float
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    failed_attempts: int  # attempts on this tier that fell back or broke mid-stream


@dataclass(frozen=True, slots=True)
class Fallback:
    source: str
    target: str
    reason: str
    count: int


@dataclass(frozen=True, slots=True)
class Summary:
    tiers: tuple[TierSummary, ...]
    fallbacks: tuple[Fallback, ...]
    events: tuple[Event, ...]
    sent: int
    total: int
    client_errors: int
    cancelled: int  # open when the demo was interrupted
    wall_s: float
    speedup: float
    baseline_price_per_1k: float | None  # the managed API's price

    @property
    def cost_usd(self) -> float:
        return sum(tier.cost_usd for tier in self.tiers)

    @property
    def baseline_cost_usd(self) -> float:
        """What the same tokens would have cost on the managed API alone."""
        tokens = sum(t.input_tokens for t in self.tiers), sum(t.output_tokens for t in self.tiers)
        return cost((float(tokens[0]), float(tokens[1])), self.baseline_price_per_1k)


def summarize(
    tiers: Sequence[TierInfo],
    final: GatewaySample,
    outcomes: Sequence[Outcome],
    events: Sequence[Event],
    *,
    sent: int,
    total: int,
    wall_s: float,
    speedup: float,
) -> Summary:
    """The summary of a finished (or interrupted) replay."""
    rows = []
    for tier in tiers:
        ttfts = [
            o.ttft_s * speedup
            for o in outcomes
            if o.tier == tier.name and o.ttft_s is not None and o.error is None
        ]
        tokens = final.tokens.get(tier.name, (0.0, 0.0))
        rows.append(
            TierSummary(
                tier=tier,
                requests=round(final.served(tier.name)),
                input_tokens=round(tokens[0]),
                output_tokens=round(tokens[1]),
                cost_usd=cost(tokens, tier.price_per_1k),
                ttft_p50_s=percentile(ttfts, 0.5),
                ttft_p95_s=percentile(ttfts, 0.95),
                failed_attempts=round(final.failed_attempts.get(tier.name, 0.0)),
            )
        )
    fallbacks = tuple(
        Fallback(source, target, reason, round(count))
        for (source, target, reason), count in sorted(final.fallbacks.items())
        if count > 0
    )
    return Summary(
        tiers=tuple(rows),
        fallbacks=fallbacks,
        events=tuple(events),
        sent=sent,
        total=total,
        client_errors=sum(1 for o in outcomes if o.error not in (None, CANCELLED)),
        cancelled=sum(1 for o in outcomes if o.error == CANCELLED),
        wall_s=wall_s,
        speedup=speedup,
        baseline_price_per_1k=tiers[-1].price_per_1k if tiers else None,
    )


def render_summary(summary: Summary) -> RenderableType:
    """The summary as rich tables (plain text when the console is not a terminal)."""
    table = Table(title="per tier", title_justify="left")
    columns = ("tier", "requests", "tokens in", "tokens out", "cost", "TTFT p50", "TTFT p95")
    for column in (*columns, "failed attempts"):
        table.add_column(column, justify="left" if column == "tier" else "right")
    for row in summary.tiers:
        table.add_row(
            f"{row.tier.name} ({row.tier.role})",
            str(row.requests),
            f"{row.input_tokens:,}",
            f"{row.output_tokens:,}",
            f"${row.cost_usd:.4f}",
            seconds_text(row.ttft_p50_s),
            seconds_text(row.ttft_p95_s),
            str(row.failed_attempts),
        )
    moves = Table(title="fallbacks (tier skipped or failed -> next tier)", title_justify="left")
    for column in ("from", "to", "reason", "requests"):
        moves.add_column(column, justify="right" if column == "requests" else "left")
    for move in summary.fallbacks:
        moves.add_row(move.source, move.target, move.reason, str(move.count))
    baseline = summary.baseline_cost_usd
    cut = f", {summary.cancelled} cut short by the interrupt" if summary.cancelled else ""
    saving = 1 - summary.cost_usd / baseline if baseline > 0 else 0.0
    totals = Text.assemble(
        f"requests: {summary.sent} of {summary.total} sent, ",
        (f"{summary.client_errors} failed", "red" if summary.client_errors else "green"),
        f" as the client saw them{cut}; ",
        f"{summary.wall_s:.1f} s wall clock at x{summary.speedup:g}\n",
        ("total cost ", "bold"),
        (f"${summary.cost_usd:.4f}", "bold"),
        f" vs ${baseline:.4f} with every request on the managed API",
        (f" ({saving:.0%} saved)" if baseline > 0 else ""),
    )
    parts: list[RenderableType] = [table, moves if summary.fallbacks else Text("no fallbacks")]
    if summary.events:
        lines = [f"{trace_clock(e.wall_s * summary.speedup)}  {e.text}" for e in summary.events]
        parts.append(Text("events (trace time)\n" + "\n".join(lines)))
    parts.append(totals)
    return Group(*parts)


def summary_json(summary: Summary) -> dict[str, Any]:
    """The summary as JSON-ready data: the same figures as :func:`render_summary`."""
    return {
        "sent": summary.sent,
        "total": summary.total,
        "clientErrors": summary.client_errors,
        "cancelled": summary.cancelled,
        "wallSeconds": round(summary.wall_s, 3),
        "speedup": summary.speedup,
        "costUsd": summary.cost_usd,
        "baselineCostUsd": summary.baseline_cost_usd,
        "tiers": [
            {
                "tier": row.tier.name,
                "role": row.tier.role,
                "requests": row.requests,
                "inputTokens": row.input_tokens,
                "outputTokens": row.output_tokens,
                "costUsd": row.cost_usd,
                "ttftP50Seconds": row.ttft_p50_s,
                "ttftP95Seconds": row.ttft_p95_s,
                "failedAttempts": row.failed_attempts,
            }
            for row in summary.tiers
        ],
        "fallbacks": [
            {"from": f.source, "to": f.target, "reason": f.reason, "requests": f.count}
            for f in summary.fallbacks
        ],
        "events": [
            {"traceSeconds": round(e.wall_s * summary.speedup, 3), "text": e.text}
            for e in summary.events
        ],
    }
