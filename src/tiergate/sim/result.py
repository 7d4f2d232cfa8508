"""What a simulation found: the data model the simulator fills in and every output reads.

Frozen dataclasses over the run's figures. The latency histograms and time series inside are
the (mutable, append-only) accumulators the run filled; once a :class:`SimResult` is built
nothing changes them. ``to_json()`` gives JSON-ready data with camelCase keys, as every other
JSON tiergate writes; ``summary.json`` is exactly ``SimResult.to_json()``.
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tiergate.sim.stats import LogHistogram, TimeSeries

TierKind = Literal["on-prem", "cloud", "managed"]
Fidelity = Literal["iteration", "request"]

# The seed's SLO: time to first token at the 95th percentile within two seconds.
DEFAULT_TTFT_P95_TARGET_S = 2.0
# Enough for a week of scaling and node events at a few a minute; beyond it only counts grow.
DEFAULT_EVENT_CAPACITY = 10_000


def _r(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


@dataclass(frozen=True, slots=True)
class CapacityCost:
    """One capacity type of a tier (``on-demand``, ``spot``, ``on-prem``, ``tokens``): the
    GPU-hours its nodes were billed for and what they cost."""

    capacity_type: str
    gpu_hours_billed: float
    cost_usd: float

    def to_json(self) -> dict[str, Any]:
        return {
            "capacityType": self.capacity_type,
            "gpuHoursBilled": _r(self.gpu_hours_billed),
            "costUsd": _r(self.cost_usd),
        }


@dataclass(frozen=True, slots=True)
class TierResult:
    """One tier of the cascade over the whole run.

    ``requests`` were answered by this tier (the last tier a request reached, with a success);
    ``fallbacks_by_reason`` counts the requests that left this tier for the next one, by
    reason: a status code (``"503"``, ``"429"``) or a condition (``"timeout"``,
    ``"unhealthy"``, ``"breaker_open"``, ``"saturated"``, ``"connection"``). GPU-hours are
    billed (launch to termination, booting included) and busy (a replica had work);
    ``price_note`` says which price a managed tier used and where it comes from.
    """

    name: str
    kind: TierKind
    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    gpu_hours_billed: float
    gpu_hours_busy: float
    ttft: LogHistogram
    itl: LogHistogram
    fallbacks_by_reason: Mapping[str, int] = field(default_factory=dict)
    by_capacity: tuple[CapacityCost, ...] = ()
    price_note: str = ""

    @property
    def utilization(self) -> float | None:
        """GPU-hours busy over GPU-hours billed; None for a managed tier or nothing billed."""
        if self.kind == "managed" or self.gpu_hours_billed <= 0:
            return None
        return self.gpu_hours_busy / self.gpu_hours_billed

    @property
    def usd_per_million_tokens(self) -> float | None:
        """What a million tokens (input and output) cost on this tier; None without tokens."""
        tokens = self.input_tokens + self.output_tokens
        return self.cost_usd / tokens * 1e6 if tokens else None

    @property
    def fallbacks(self) -> int:
        """Requests that left this tier for the next."""
        return sum(self.fallbacks_by_reason.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "requests": self.requests,
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "costUsd": _r(self.cost_usd),
            "usdPerMillionTokens": _r(self.usd_per_million_tokens),
            "gpuHoursBilled": _r(self.gpu_hours_billed),
            "gpuHoursBusy": _r(self.gpu_hours_busy),
            "utilization": _r(self.utilization),
            "ttft": self.ttft.to_json(),
            "itl": self.itl.to_json(),
            "fallbacksByReason": dict(sorted(self.fallbacks_by_reason.items())),
            "byCapacity": [c.to_json() for c in self.by_capacity],
            "priceNote": self.price_note,
        }


@dataclass(frozen=True, slots=True)
class SloResult:
    """The fleet's time-to-first-token SLO over the run.

    ``met``: the fleet's TTFT p95 (all tiers' served requests together) is within the target.
    ``attained_share``: the share of all requests whose first token came within the target;
    a request that failed counts as missed. ``tier_p95_s``: each tier's own p95.
    """

    ttft_p95_target_s: float
    ttft_p95_s: float | None
    attained_share: float | None
    met: bool
    tier_p95_s: Mapping[str, float | None] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        tiers: Iterable[TierResult],
        *,
        failed: int = 0,
        target_s: float = DEFAULT_TTFT_P95_TARGET_S,
    ) -> SloResult:
        """The SLO figures from the tiers' TTFT histograms and the count of failed requests."""
        tiers = tuple(tiers)
        fleet = LogHistogram()
        for tier in tiers:
            fleet.merge(tier.ttft)
        p95 = fleet.quantile(0.95)
        within = fleet.fraction_at_most(target_s)
        total = fleet.count + failed
        attained = None if total == 0 else (within or 0.0) * fleet.count / total
        return cls(
            ttft_p95_target_s=target_s,
            ttft_p95_s=p95,
            attained_share=attained,
            met=p95 is not None and p95 <= target_s,
            tier_p95_s={tier.name: tier.ttft.quantile(0.95) for tier in tiers},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "ttftP95TargetSeconds": self.ttft_p95_target_s,
            "ttftP95Seconds": _r(self.ttft_p95_s),
            "attainedShare": _r(self.attained_share),
            "met": self.met,
            "tierTtftP95Seconds": {name: _r(p95) for name, p95 in self.tier_p95_s.items()},
        }


@dataclass(frozen=True, slots=True)
class Series:
    """The fleet over virtual time, sampled every ``step_s`` from ``start_s``.

    ``arrivals_per_s``: requests arriving per second over each step. Per tier: ``capacity_per_s``
    (requests per second its ready replicas serve at saturation), ``replicas`` (ready),
    ``nodes`` and ``cost_usd`` (cumulative). ``pool_nodes``: nodes per node pool.
    """

    start_s: float
    step_s: float
    arrivals_per_s: TimeSeries
    capacity_per_s: Mapping[str, TimeSeries] = field(default_factory=dict)
    replicas: Mapping[str, TimeSeries] = field(default_factory=dict)
    nodes: Mapping[str, TimeSeries] = field(default_factory=dict)
    pool_nodes: Mapping[str, TimeSeries] = field(default_factory=dict)
    cost_usd: Mapping[str, TimeSeries] = field(default_factory=dict)

    @classmethod
    def empty(
        cls, start_s: float, step_s: float, tiers: Iterable[str], pools: Iterable[str] = ()
    ) -> Series:
        """Empty series for these tiers and pools, for a run to append to."""
        tiers, pools = tuple(tiers), tuple(pools)

        def each(names: tuple[str, ...]) -> dict[str, TimeSeries]:
            return {name: TimeSeries(start_s, step_s) for name in names}

        return cls(
            start_s=start_s,
            step_s=step_s,
            arrivals_per_s=TimeSeries(start_s, step_s),
            capacity_per_s=each(tiers),
            replicas=each(tiers),
            nodes=each(tiers),
            pool_nodes=each(pools),
            cost_usd=each(tiers),
        )

    def to_json(self) -> dict[str, Any]:
        def each(series: Mapping[str, TimeSeries]) -> dict[str, list[float]]:
            return {name: s.to_json() for name, s in series.items()}

        return {
            "startSeconds": self.start_s,
            "stepSeconds": self.step_s,
            "arrivalsPerSecond": self.arrivals_per_s.to_json(),
            "capacityPerSecond": each(self.capacity_per_s),
            "replicas": each(self.replicas),
            "nodes": each(self.nodes),
            "poolNodes": each(self.pool_nodes),
            "costUsd": each(self.cost_usd),
        }


@dataclass(frozen=True, slots=True)
class SimEvent:
    """Something that happened to the fleet: ``kind`` is ``scale``, ``node``, ``fault``,
    ``breaker``, ...; ``subject`` the tier or pool it happened to."""

    at: float
    kind: str
    subject: str
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"at": _r(self.at, 3), "kind": self.kind, "subject": self.subject, "text": self.text}


class EventLog:
    """The run's events, the first ``capacity`` kept and every one counted by kind."""

    __slots__ = ("capacity", "counts", "dropped", "events")

    def __init__(self, capacity: int = DEFAULT_EVENT_CAPACITY) -> None:
        self.capacity = capacity
        self.events: list[SimEvent] = []
        self.counts: dict[str, int] = {}
        self.dropped = 0

    def add(self, at: float, kind: str, subject: str, text: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if len(self.events) < self.capacity:
            self.events.append(SimEvent(at, kind, subject, text))
        else:
            self.dropped += 1


@dataclass(frozen=True, slots=True)
class SimResult:
    """A whole run: what was simulated, what each tier did and cost, and how fast it ran.

    ``failed_by_status``: requests whose final status after the whole cascade was ≥ 400, by
    status code (``"503"``, ``"429"``); requests neither served nor failed were still in flight
    at the end. ``events`` are the first events kept (``events_dropped``
    more were only counted; ``event_counts`` counts all by kind). ``wall_s`` and
    ``peak_rss_mib`` measure the run itself and are the only figures that vary between two
    runs with the same seed.
    """

    fleet: str
    trace: str
    seed: int
    fidelity: Fidelity
    start_s: float
    duration_s: float
    wall_s: float
    requests_total: int
    requests_served: int
    failed_by_status: Mapping[str, int]
    tiers: tuple[TierResult, ...]
    slo: SloResult
    series: Series
    events: tuple[SimEvent, ...] = ()
    events_dropped: int = 0
    event_counts: Mapping[str, int] = field(default_factory=dict)
    peak_rss_mib: float = 0.0

    @property
    def requests_failed(self) -> int:
        return sum(self.failed_by_status.values())

    @property
    def requests_unfinished(self) -> int:
        """Requests still in flight when the simulated time ran out."""
        return self.requests_total - self.requests_served - self.requests_failed

    @property
    def cost_usd(self) -> float:
        return sum(tier.cost_usd for tier in self.tiers)

    @property
    def requests_per_wall_s(self) -> float | None:
        """Simulated requests per second of wall time; None for a run that took no time."""
        return self.requests_total / self.wall_s if self.wall_s > 0 else None

    def to_json(self, *, timing: bool = True) -> dict[str, Any]:
        """The result as JSON-ready data; ``timing=False`` leaves out the wall-clock figures,
        so that two runs with the same seed give the same data."""
        data: dict[str, Any] = {
            "fleet": self.fleet,
            "trace": self.trace,
            "seed": self.seed,
            "fidelity": self.fidelity,
            "startSeconds": self.start_s,
            "durationSeconds": self.duration_s,
            "requests": {
                "total": self.requests_total,
                "served": self.requests_served,
                "failed": self.requests_failed,
                "unfinished": self.requests_unfinished,
                "failedByStatus": dict(sorted(self.failed_by_status.items())),
            },
            "costUsd": _r(self.cost_usd),
            "slo": self.slo.to_json(),
            "tiers": [tier.to_json() for tier in self.tiers],
            "eventCounts": dict(sorted(self.event_counts.items())),
            "eventsDropped": self.events_dropped,
            "events": [event.to_json() for event in self.events],
            "series": self.series.to_json(),
        }
        if timing:
            data["run"] = {
                "wallSeconds": _r(self.wall_s, 3),
                "requestsPerWallSecond": _r(self.requests_per_wall_s, 1),
                "peakRssMib": _r(self.peak_rss_mib, 1),
            }
        return data


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB (``getrusage``'s ``ru_maxrss``:
    KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
