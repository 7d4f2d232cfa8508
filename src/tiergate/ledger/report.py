"""Cost reports over the ledger: pure aggregation of request records for one period.

Rows group the records by team, project, model, tier, key or stage. Each row counts requests,
tokens and cost, the share of its requests each tier served, the share that fell back at least
once and the share that ended in an error (a status of 400 or more, or an error after the
response started). Tiers paid by the GPU-hour also get an effective price: what their GPUs
cost over the hours of the period that have passed (all of a past month, the current month up
to now, none of a future one), divided by the tokens (input and output) they served. A tier
whose GPUs are elastic (nodes that come and go) has no node-hours in the ledger: its row says
so and shows its requests and tokens, never an invented GPU cost.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from tiergate.cost import elapsed_hours, fixed_gpu_cost
from tiergate.ledger.records import RequestRecord

if TYPE_CHECKING:
    from tiergate.spec.fleet import Tier

NONE = "(none)"  # the group of records without a team, project, key or stage
ELASTIC_NOTE = "node-hours not in the ledger: GPU cost unknown; requests and tokens only"


class GroupBy(StrEnum):
    TEAM = "team"
    PROJECT = "project"
    MODEL = "model"
    TIER = "tier"
    KEY = "key"
    STAGE = "stage"

    @property
    def record_field(self) -> str:
        """The record field grouped on."""
        return "key_id" if self is GroupBy.KEY else self.value


@dataclass(frozen=True, slots=True)
class Period:
    """``[start, end)`` in Unix seconds (UTC)."""

    start: float
    end: float
    label: str

    @property
    def hours(self) -> float:
        return (self.end - self.start) / 3600


def parse_month(text: str) -> Period:
    """``2026-11`` → the UTC calendar month ``[2026-11-01, 2026-12-01)``; ValueError otherwise."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
    if match is None:
        raise ValueError(f"month {text!r} is not YYYY-MM (for example 2026-11)")
    year, month = int(match[1]), int(match[2])
    if year < 1970 or not 1 <= month <= 12:
        raise ValueError(f"month {text!r} does not exist (months run 01 to 12, from 1970)")
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return Period(start.timestamp(), end.timestamp(), f"{year:04d}-{month:02d}")


@dataclass(frozen=True, slots=True)
class GpuCost:
    """A tier paid for by the GPU-hour, whatever it serves: ``gpus`` always there, or
    ``elastic`` GPUs whose nodes come and go (then rate and count are unknown here: 0)."""

    usd_per_gpu_hour: float
    gpus: int
    elastic: bool = False

    def __post_init__(self) -> None:
        if self.usd_per_gpu_hour < 0 or self.gpus < (0 if self.elastic else 1):
            raise ValueError(f"GPU cost needs USD/GPU-hour >= 0 and gpus >= 1, got {self}")


def gpu_costs(tiers: Iterable[Tier]) -> dict[str, GpuCost]:
    """The GPU-hour tiers of a fleet: fixed pools with their price, and elastic ones."""
    costs: dict[str, GpuCost] = {}
    for tier in tiers:
        if tier.gpu_pool is not None:
            costs[tier.name] = GpuCost(*tier.gpu_pool)
        elif tier.gpu_elastic:
            costs[tier.name] = GpuCost(0.0, 0, elastic=True)
    return costs


@dataclass(frozen=True, slots=True)
class ReportRow:
    group: str
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    served: Mapping[str, int] = field(default_factory=dict)  # tier -> requests it served
    fallbacks: int = 0  # requests that left at least one tier
    errors: int = 0

    def tier_share(self, tier: str) -> float:
        return self.served.get(tier, 0) / self.requests if self.requests else 0.0

    @property
    def fallback_share(self) -> float:
        return self.fallbacks / self.requests if self.requests else 0.0

    @property
    def error_share(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True, slots=True)
class TierCost:
    """The effective price of a GPU-hour tier over the hours of the period charged so far.

    An elastic tier has no cost here (``fixed_usd`` and ``hours`` are ``None``): its nodes'
    hours are not in the ledger; ``note`` says so.
    """

    tier: str
    usd_per_gpu_hour: float
    gpus: int
    hours: float | None  # hours charged: those of the period that have passed
    tokens: int  # input and output tokens it served
    elastic: bool = False
    requests: int = 0

    @property
    def fixed_usd(self) -> float | None:
        if self.hours is None:
            return None
        return fixed_gpu_cost(self.usd_per_gpu_hour, self.gpus, self.hours)

    @property
    def usd_per_1k_tokens(self) -> float | None:
        fixed = self.fixed_usd
        return fixed / self.tokens * 1000 if fixed is not None and self.tokens else None

    @property
    def note(self) -> str | None:
        return ELASTIC_NOTE if self.elastic else None


@dataclass(frozen=True, slots=True)
class Report:
    period: Period
    by: GroupBy
    tiers: tuple[str, ...]  # every tier that served, most requests first
    rows: tuple[ReportRow, ...]  # most cost first
    total: ReportRow
    gpu_tiers: tuple[TierCost, ...]


class _Tally:
    def __init__(self) -> None:
        self.requests = self.input = self.output = self.cached = self.fallbacks = self.errors = 0
        self.cost = 0.0
        self.served: Counter[str] = Counter()

    def add(self, record: RequestRecord) -> None:
        self.requests += 1
        self.input += record.input_tokens
        self.output += record.output_tokens
        self.cached += record.cached_tokens
        self.cost += record.cost_usd
        self.served[record.tier] += 1
        self.fallbacks += bool(record.fallbacks)
        self.errors += record.status >= 400 or record.error is not None

    def row(self, group: str) -> ReportRow:
        return ReportRow(
            group,
            self.requests,
            self.input,
            self.output,
            self.cached,
            self.cost,
            dict(self.served),
            self.fallbacks,
            self.errors,
        )


def build_report(
    records: Iterable[RequestRecord],
    period: Period,
    by: GroupBy,
    gpu_costs: Mapping[str, GpuCost] | None = None,
    now: float | None = None,
) -> Report:
    """Aggregate the ``records`` of ``period`` (others are ignored) grouped ``by``.

    GPU-hour tiers are charged the hours of ``period`` that have passed at ``now`` (Unix
    seconds; ``None``: the period is over, all of it is charged).
    """
    groups: dict[str, _Tally] = {}
    total = _Tally()
    tokens: Counter[str] = Counter()
    for record in records:
        if not period.start <= record.at < period.end:
            continue
        value = getattr(record, by.record_field)
        groups.setdefault(NONE if value is None else str(value), _Tally()).add(record)
        total.add(record)
        tokens[record.tier] += record.input_tokens + record.output_tokens
    rows = sorted((tally.row(name) for name, tally in groups.items()), key=_by_cost)
    tiers = sorted(total.served, key=lambda tier: (tier == "none", -total.served[tier], tier))
    charged = elapsed_hours(period.start, period.end, period.end if now is None else now)
    gpu_tiers = tuple(
        TierCost(
            tier,
            cost.usd_per_gpu_hour,
            cost.gpus,
            None if cost.elastic else charged,
            tokens[tier],
            cost.elastic,
            total.served[tier],
        )
        for tier, cost in sorted((gpu_costs or {}).items())
    )
    return Report(period, by, tuple(tiers), tuple(rows), total.row("total"), gpu_tiers)


def _by_cost(row: ReportRow) -> tuple[float, int, str]:
    return (-row.cost_usd, -row.requests, row.group)


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def report_json(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data (costs rounded to 1e-6 USD, shares to 1e-4)."""

    def row_json(row: ReportRow) -> dict[str, Any]:
        return {
            report.by.value: row.group,
            "requests": row.requests,
            "inputTokens": row.input_tokens,
            "outputTokens": row.output_tokens,
            "cachedTokens": row.cached_tokens,
            "costUsd": round(row.cost_usd, 6),
            "tierShare": {tier: round(row.tier_share(tier), 4) for tier in report.tiers},
            "fallbackShare": round(row.fallback_share, 4),
            "errorShare": round(row.error_share, 4),
        }

    def gpu_json(cost: TierCost) -> dict[str, Any]:
        per_1k = cost.usd_per_1k_tokens
        fixed = cost.fixed_usd
        return {
            "tier": cost.tier,
            "gpuPool": "elastic" if cost.elastic else "fixed",
            "gpuHourUsd": None if cost.elastic else cost.usd_per_gpu_hour,
            "gpus": None if cost.elastic else cost.gpus,
            "hours": cost.hours,
            "fixedCostUsd": None if fixed is None else round(fixed, 6),
            "requests": cost.requests,
            "tokens": cost.tokens,
            "usdPer1kTokens": None if per_1k is None else round(per_1k, 6),
            "note": cost.note,
        }

    period = report.period
    return {
        "period": {
            "month": period.label,
            "start": _iso(period.start),
            "end": _iso(period.end),
            "hours": period.hours,
        },
        "by": report.by.value,
        "tiers": list(report.tiers),
        "rows": [row_json(row) for row in report.rows],
        "total": row_json(report.total),
        "gpuTiers": [gpu_json(cost) for cost in report.gpu_tiers],
    }


def report_csv(report: Report) -> str:
    """One line per group (no total line); a ``share_TIER`` column per tier. Grouped by tier,
    GPU-hour tiers also get the hours charged, their fixed cost, effective USD per 1k tokens
    and a note (an elastic tier's: why it has no cost)."""
    gpu = {cost.tier: cost for cost in report.gpu_tiers} if report.by is GroupBy.TIER else {}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = [report.by.value, "requests", "input_tokens", "output_tokens", "cached_tokens"]
    header += ["cost_usd", *(f"share_{tier}" for tier in report.tiers)]
    header += ["fallback_share", "error_share"]
    if gpu:
        header += ["gpu_hours_charged", "gpu_fixed_usd", "usd_per_1k_tokens", "gpu_note"]
    writer.writerow(header)
    for row in report.rows:
        line: list[Any] = [row.group, row.requests, row.input_tokens, row.output_tokens]
        line += [row.cached_tokens, round(row.cost_usd, 6)]
        line += [round(row.tier_share(tier), 4) for tier in report.tiers]
        line += [round(row.fallback_share, 4), round(row.error_share, 4)]
        if gpu:
            cost = gpu.get(row.group)
            hours = None if cost is None else cost.hours
            fixed = None if cost is None else cost.fixed_usd
            per_1k = None if cost is None else cost.usd_per_1k_tokens
            line.append("" if hours is None else hours)
            line.append("" if fixed is None else round(fixed, 6))
            line.append("" if per_1k is None else round(per_1k, 6))
            line.append((cost.note if cost is not None else None) or "")
        writer.writerow(line)
    return out.getvalue()
