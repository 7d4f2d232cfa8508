"""The demo's live view: one frame per refresh, as a rich renderable or as plain lines.

A :class:`Frame` is plain values computed from two gateway scrapes a few seconds apart, the
engines' latest gauges and the client's recent requests (:func:`build_frame`); rendering does
no arithmetic beyond formatting. Time to first token is the client's: from sending a request
to its first generated text, whatever tiers it went through. Latencies and rates are shown in
trace time (wall time x speed-up): the emulated GPUs run as many times faster as the trace is
compressed, so the figures read as those of the real fleet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tiergate.demo.metrics import GatewaySample, cost, percentile
from tiergate.demo.replay import Outcome, ReplayProgress


@dataclass(frozen=True, slots=True)
class TierInfo:
    """A tier of the demo: its fleet name, what it stands for, and its price per 1k tokens."""

    name: str
    role: str
    price_per_1k: float | None


@dataclass(frozen=True, slots=True)
class EngineLoad:
    """The mean KV-cache usage (0-1) and the total queue over a tier's replicas."""

    kv_usage: float | None
    waiting: float | None


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened, at ``wall_s`` seconds into the replay."""

    wall_s: float
    text: str


@dataclass(frozen=True, slots=True)
class TierRow:
    tier: TierInfo
    requests_per_s: float  # in trace time
    ttft_p95_s: float | None  # in trace time
    load: EngineLoad
    fallbacks: float
    cost_usd: float
    state: str


@dataclass(frozen=True, slots=True)
class Frame:
    wall_s: float
    trace_s: float
    trace_total_s: float
    speedup: float
    sent: int
    total: int
    in_flight: int
    failed: int
    rows: tuple[TierRow, ...]
    events: tuple[Event, ...]

    @property
    def cost_usd(self) -> float:
        return sum(row.cost_usd for row in self.rows)


def build_frame(
    tiers: Sequence[TierInfo],
    latest: GatewaySample,
    earlier: GatewaySample,
    loads: Mapping[str, EngineLoad],
    *,
    progress: ReplayProgress,
    outcomes: Sequence[Outcome],
    events: Sequence[Event],
    wall_s: float,
    speedup: float,
    trace_total_s: float,
) -> Frame:
    """The frame for ``latest``, with rates and p95 over the time since ``earlier`` (the same
    span of the client's latest ``outcomes``)."""
    span = max(latest.at - earlier.at, 1e-9)
    recent = _recent_ttfts(outcomes, since=wall_s - span)
    rows = []
    for tier in tiers:
        served = latest.served(tier.name) - earlier.served(tier.name)
        p95 = percentile(recent.get(tier.name, []), 0.95)
        rows.append(
            TierRow(
                tier=tier,
                requests_per_s=served / span / speedup,
                ttft_p95_s=None if p95 is None else p95 * speedup,
                load=loads.get(tier.name, EngineLoad(None, None)),
                fallbacks=latest.fallbacks_from(tier.name),
                cost_usd=cost(latest.tokens.get(tier.name, (0.0, 0.0)), tier.price_per_1k),
                state=tier_state(latest, tier.name),
            )
        )
    return Frame(
        wall_s=wall_s,
        trace_s=wall_s * speedup,
        trace_total_s=trace_total_s,
        speedup=speedup,
        sent=progress.sent,
        total=progress.total,
        in_flight=progress.in_flight,
        failed=progress.failed,
        rows=tuple(rows),
        events=tuple(events),
    )


def _recent_ttfts(outcomes: Sequence[Outcome], since: float) -> dict[str, list[float]]:
    """Times to first token by tier of the requests that ended after ``since``."""
    by_tier: dict[str, list[float]] = {}
    # Outcomes are kept in the order requests ended: walk back until the window's start.
    for outcome in reversed(outcomes):
        if outcome.done_at < since:
            break
        if outcome.tier is not None and outcome.ttft_s is not None and outcome.error is None:
            by_tier.setdefault(outcome.tier, []).append(outcome.ttft_s)
    return by_tier


def tier_state(sample: GatewaySample, tier: str) -> str:
    """The gateway's view of a tier in a word or two."""
    if sample.up.get(tier, 1.0) < 1:
        return "down"
    breaker = sample.breaker.get(tier, 0.0)
    if breaker == 1:
        return "breaker open"
    if breaker == 2:
        return "half-open"
    if sample.saturated.get(tier, 0.0) >= 1:
        return "saturated"
    return "up"


_STATE_STYLE = {"up": "green", "saturated": "yellow", "half-open": "yellow"}


def render(frame: Frame) -> RenderableType:
    """The frame for a terminal (rich ``Live``)."""
    header = Text.assemble(
        ("tiergate demo", "bold"),
        f"  trace {trace_clock(frame.trace_s)} / {trace_clock(frame.trace_total_s)}",
        f" at x{frame.speedup:g}",
        f"  ·  sent {frame.sent}/{frame.total}  ·  in flight {frame.in_flight}",
        ("  ·  failed " + str(frame.failed), "red" if frame.failed else ""),
        f"  ·  cost ${frame.cost_usd:.4f}",
    )
    table = Table(caption="rates and latencies in trace time, over the last few seconds")
    columns = ("tier", "name", "state", "req/s", "p95 TTFT", "KV cache", "queue", "fallbacks")
    for column in (*columns, "cost"):
        table.add_column(column, justify="left" if column in columns[:3] else "right")
    for row in frame.rows:
        style = _STATE_STYLE.get(row.state, "bold red")
        table.add_row(
            row.tier.role,
            f"[dim]{row.tier.name}[/]",
            f"[{style}]{row.state}[/]",
            f"{row.requests_per_s:.2f}",
            seconds_text(row.ttft_p95_s),
            _share(row.load.kv_usage),
            _count(row.load.waiting),
            f"{row.fallbacks:.0f}",
            f"${row.cost_usd:.4f}",
        )
    events = Text()
    for event in frame.events[-6:]:
        events.append(f"{trace_clock(event.wall_s * frame.speedup)}  ", style="dim")
        events.append(event.text + "\n")
    return Group(header, table, events)


def plain_lines(frame: Frame) -> list[str]:
    """The frame as lines for a log or a pipe: a header, then one line per tier."""
    lines = [
        f"[trace {trace_clock(frame.trace_s)}/{trace_clock(frame.trace_total_s)}"
        f" x{frame.speedup:g}] "
        f"sent {frame.sent}/{frame.total}, in flight {frame.in_flight}, failed {frame.failed}, "
        f"cost ${frame.cost_usd:.4f}"
    ]
    for row in frame.rows:
        lines.append(
            f"  {row.tier.name:<26} {row.state:<12} {row.requests_per_s:6.2f} req/s  "
            f"p95 TTFT {seconds_text(row.ttft_p95_s):>7}  KV {_share(row.load.kv_usage):>4}  "
            f"queue {_count(row.load.waiting):>3}  fallbacks {row.fallbacks:5.0f}  "
            f"${row.cost_usd:.4f}"
        )
    return lines


def trace_clock(seconds: float) -> str:
    """mm:ss."""
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes:02d}:{rest:02d}"


def seconds_text(value: float | None) -> str:
    """Seconds with two decimals, or a dash for no value."""
    return "-" if value is None else f"{value:.2f} s"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
