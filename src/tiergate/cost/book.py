"""One account of what a fleet cost: GPU tiers by their nodes, managed tiers by their tokens.

A :class:`CostBook` collects what a run (or a month) consumed: the nodes each tier held, the
GPU-seconds its engines were busy, the tokens it served. :meth:`CostBook.rows` turns them into
one row per tier and capacity type, :meth:`CostBook.tiers` one per tier, :meth:`CostBook.total`
one for the fleet: GPU-hours billed and busy, utilization, USD and effective USD per million
tokens. GPU tiers cost what their nodes are billed for (:mod:`tiergate.cost.ec2`), whatever
they served; nothing here prices a GPU per token from an assumed utilization.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tiergate.cost.ec2 import NodeUsage, billed_seconds
from tiergate.cost.managed import TokenPrices

MANAGED = "managed"  # the capacity type of a managed API tier's row
ALL = "all"  # the capacity type of a row that sums a tier's capacity types
TOTAL = "total"  # the tier of the fleet's row


@dataclass(frozen=True, slots=True)
class CostRow:
    """What one tier (or one of its capacity types, or the fleet) cost over the period."""

    tier: str
    capacity_type: str  # spot, on-demand, on-prem, managed, or all
    nodes: int
    gpu_hours_billed: float
    gpu_hours_busy: float
    cost_usd: float
    input_tokens: int
    output_tokens: int
    cached_tokens: int

    @property
    def utilization(self) -> float | None:
        """Busy over billed GPU-hours; ``None`` without billed GPU-hours (a managed tier)."""
        return self.gpu_hours_busy / self.gpu_hours_billed if self.gpu_hours_billed else None

    @property
    def tokens(self) -> int:
        """Input and output tokens served."""
        return self.input_tokens + self.output_tokens

    @property
    def usd_per_million_tokens(self) -> float | None:
        """Cost over tokens served * 1e6; ``None`` when it served no token."""
        return self.cost_usd / self.tokens * 1e6 if self.tokens else None


class _Tally:
    __slots__ = ("billed_s", "busy_s", "cached", "cost", "input", "nodes", "output")

    def __init__(self) -> None:
        self.nodes = self.input = self.output = self.cached = 0
        self.billed_s = self.busy_s = self.cost = 0.0

    def merge(self, other: _Tally) -> None:
        self.nodes += other.nodes
        self.input += other.input
        self.output += other.output
        self.cached += other.cached
        self.billed_s += other.billed_s
        self.busy_s += other.busy_s
        self.cost += other.cost

    def row(self, tier: str, capacity_type: str) -> CostRow:
        return CostRow(
            tier,
            capacity_type,
            self.nodes,
            self.billed_s / 3600,
            self.busy_s / 3600,
            self.cost,
            self.input,
            self.output,
            self.cached,
        )


class CostBook:
    """The cost account of one period: add nodes, busy GPU-seconds and tokens, read rows.

    ``managed`` maps each managed API tier to its token prices; every other tier is a GPU tier
    whose cost is its nodes'. Rows list the tiers of ``order`` first, in that order, then the
    others in the order they were first added. Busy GPU-seconds and tokens may be given per
    capacity type or, with ``capacity_type=None``, for the tier as a whole: they then count in
    the tier's row (:meth:`tiers`) and the fleet's (:meth:`total`), in no capacity type's
    (:meth:`rows`).
    Adding is O(1) per call, so the simulator can add as it goes; rows are built on demand.
    """

    __slots__ = ("_busy", "_managed", "_nodes", "_order", "_tokens")

    def __init__(
        self, managed: Mapping[str, TokenPrices] | None = None, order: Iterable[str] = ()
    ) -> None:
        self._managed = dict(managed or {})
        self._nodes: list[NodeUsage] = []
        self._busy: dict[tuple[str, str | None], float] = {}
        self._tokens: dict[tuple[str, str | None], list[int]] = {}
        # Tiers in the order of rows: ``order`` (the cascade's, say), then others first seen first.
        self._order: dict[str, None] = dict.fromkeys(order)

    @property
    def nodes(self) -> tuple[NodeUsage, ...]:
        """Every node added, in the order added (for :func:`tiergate.cost.series.cumulative`)."""
        return tuple(self._nodes)

    def add_nodes(self, records: Iterable[NodeUsage]) -> None:
        """Nodes the tiers held (a node still running has ``terminated_at=None``)."""
        for node in records:
            if node.tier in self._managed:
                raise ValueError(f"tier {node.tier!r} is a managed API tier: it has no nodes")
            self._nodes.append(node)
            self._order.setdefault(node.tier)

    def add_busy(self, tier: str, gpu_seconds: float, capacity_type: str | None = None) -> None:
        """GPU-seconds ``tier``'s engines had work: seconds busy * the replica's GPUs."""
        key = (tier, capacity_type)
        self._busy[key] = self._busy.get(key, 0.0) + gpu_seconds
        self._order.setdefault(tier)

    def add_tokens(
        self,
        tier: str,
        input_tokens: int,
        output_tokens: int,
        cached_tokens: int = 0,
        capacity_type: str | None = None,
    ) -> None:
        """Tokens ``tier`` served; ``input_tokens`` includes the ``cached_tokens`` read from a
        prompt cache. A managed tier's tokens are its cost."""
        if tier in self._managed:
            capacity_type = MANAGED
        tally = self._tokens.get((tier, capacity_type))
        if tally is None:
            self._tokens[(tier, capacity_type)] = [input_tokens, output_tokens, cached_tokens]
            self._order.setdefault(tier)
        else:
            tally[0] += input_tokens
            tally[1] += output_tokens
            tally[2] += cached_tokens

    def rows(self, end: float) -> list[CostRow]:
        """One row per tier and capacity type, capacity types in the order spot, on-demand,
        on-prem; nodes still running are billed up to ``end``."""
        rank = {tier: index for index, tier in enumerate(self._order)}
        tallies = self._tallies(end)
        ordered = sorted(
            (key for key in tallies if key[1] is not None),
            key=lambda key: (rank[key[0]], _CAPACITY_ORDER.get(key[1] or "", 9), key[1] or ""),
        )
        return [tallies[key].row(key[0], key[1] or "") for key in ordered]

    def tiers(self, end: float) -> list[CostRow]:
        """One row per tier, its capacity types summed (``capacity_type`` is the tier's only
        one, or ``all``)."""
        merged: dict[str, _Tally] = {}
        kinds: dict[str, set[str]] = {}
        for (tier, capacity), tally in self._tallies(end).items():
            merged.setdefault(tier, _Tally()).merge(tally)
            if capacity is not None:
                kinds.setdefault(tier, set()).add(capacity)
        return [
            merged[tier].row(tier, _one(kinds.get(tier, set())))
            for tier in self._order
            if tier in merged
        ]

    def total(self, end: float) -> CostRow:
        """The fleet's row: every tier summed."""
        total = _Tally()
        for tally in self._tallies(end).values():
            total.merge(tally)
        return total.row(TOTAL, ALL)

    def _tallies(self, end: float) -> dict[tuple[str, str | None], _Tally]:
        tallies: dict[tuple[str, str | None], _Tally] = {}
        for node in self._nodes:
            tally = tallies.setdefault((node.tier, node.capacity_type), _Tally())
            seconds = billed_seconds(node, end)
            tally.nodes += 1 if node.launched_at <= end else 0
            tally.billed_s += seconds * node.gpus
            tally.cost += seconds * node.usd_per_hour / 3600
        for key, gpu_seconds in self._busy.items():
            tallies.setdefault(key, _Tally()).busy_s += gpu_seconds
        for key, (input_tokens, output_tokens, cached) in self._tokens.items():
            tally = tallies.setdefault(key, _Tally())
            tally.input += input_tokens
            tally.output += output_tokens
            tally.cached += cached
            prices = self._managed.get(key[0])
            if prices is not None:
                tally.cost += prices.cost(input_tokens, output_tokens, cached)
        return tallies


_CAPACITY_ORDER = {"spot": 0, "on-demand": 1, "on-prem": 2, MANAGED: 3}


def _one(kinds: set[str]) -> str:
    return next(iter(kinds)) if len(kinds) == 1 else ALL
