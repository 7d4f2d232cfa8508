"""Node pools and quotas resolved from the spec into plain values the cluster model reads.

Resolution happens once per run: catalog look-ups, prices, cron parsing and the order in which
a pool's offers are tried are fixed here, so nothing on the simulation's path touches pydantic.
"""

from __future__ import annotations

from dataclasses import dataclass

from tiergate.perf.catalog import instance_named
from tiergate.perf.roofline import STORAGE_BYTES_PER_S
from tiergate.sim.distributions import Distribution
from tiergate.sim.nodes.budgets import BudgetRule
from tiergate.spec.nodepools import NodePool, Quotas

# Weight-load speeds: the perf model's NVMe, S3, FSx and EFS, plus the Hugging Face Hub direct
# (the seed: 744 GB in 20-40 min, so 744e9 / 1,800 s ≈ 0.41 GB/s at the middle).
WEIGHT_LOAD_BYTES_PER_S: dict[str, float] = {**STORAGE_BYTES_PER_S, "hub": 744e9 / 1800}

_Z95 = 1.6448536269514722  # standard normal 95th percentile

ON_DEMAND = "on-demand"
SPOT = "spot"
ON_PREM = "on-prem"


@dataclass(frozen=True, slots=True)
class Offer:
    """One instance type in one capacity type that a pool may launch, with its price."""

    instance_type: str
    capacity_type: str  # "spot" | "on-demand"
    gpus: int
    vcpus: int
    bucket: str  # EC2 quota family: "P" or "G"
    usd_per_hour: float


@dataclass(frozen=True, slots=True)
class OnPremNodes:
    """A pool's fixed nodes."""

    nodes: int
    gpu: str
    gpus_per_node: int
    vcpus: int
    usd_per_node_hour: float
    storage: str


@dataclass(frozen=True, slots=True)
class Startup:
    launch: Distribution
    image_pull: Distribution
    image_pull_cached: Distribution
    engine_start: Distribution
    image_cached: bool


@dataclass(frozen=True, slots=True)
class Pool:
    """A resolved pool. ``offers`` are in the order Karpenter tries them (:func:`offer_order`);
    ``consolidate_after_s`` is ``None`` for ``Never``."""

    name: str
    weight: int | None
    offers: tuple[Offer, ...]
    limit_gpus: int | None
    limit_nodes: int | None
    consolidation_policy: str
    consolidate_after_s: float | None
    budgets: tuple[BudgetRule, ...]
    spot_interruptions_per_hour: float
    startup: Startup
    on_prem: OnPremNodes | None = None


def offer_order(offers: list[Offer]) -> tuple[Offer, ...]:
    """Spot before on-demand, each by price, then name (for ties).

    Karpenter launches spot when a NodePool allows both and falls back to on-demand when spot
    is unavailable; on-demand picks the cheapest type (``lowest-price``), spot uses EC2 Fleet's
    ``price-capacity-optimized``: the pools least likely to be interrupted, then the cheapest.
    Here a pool has one interruption rate for all its types, so that reduces to the cheapest.
    """
    return tuple(
        sorted(offers, key=lambda o: (o.capacity_type != SPOT, o.usd_per_hour, o.instance_type))
    )


def resolve_pool(spec: NodePool) -> Pool:
    """The runtime view of one spec pool."""
    startup = Startup(
        launch=spec.startup.launch_s,
        image_pull=spec.startup.image_pull_s,
        image_pull_cached=spec.startup.image_pull_cached_s,
        engine_start=spec.startup.engine_start_s,
        image_cached=spec.startup.image_cached,
    )
    on_prem = None
    offers: list[Offer] = []
    if spec.on_prem is not None:
        own = spec.on_prem
        on_prem = OnPremNodes(
            own.nodes,
            own.gpu,
            own.gpus_per_node,
            own.vcpus or 0,
            own.costs.usd_per_node_hour,
            own.storage,
        )
    for name in spec.instance_types:
        catalog = instance_named(name)
        for capacity in spec.capacity_types:
            price = spec.price_usd_per_hour(name, capacity)
            if price is None:  # the spec's validation refuses this; kept for mypy
                raise ValueError(f"no {capacity} price for {name}")
            offers.append(
                Offer(name, capacity, catalog.gpus, catalog.vcpus, catalog.quota_bucket, price)
            )
    disruption = spec.disruption
    return Pool(
        name=spec.name,
        weight=spec.weight,
        offers=offer_order(offers),
        limit_gpus=spec.limits.gpus,
        limit_nodes=spec.limits.nodes,
        consolidation_policy=disruption.consolidation_policy,
        consolidate_after_s=disruption.consolidate_after_s,
        budgets=tuple(BudgetRule.from_spec(b) for b in disruption.budgets),
        spot_interruptions_per_hour=spec.spot_interruptions_per_instance_hour,
        startup=startup,
        on_prem=on_prem,
    )


def resolve_pools(specs: tuple[NodePool, ...]) -> tuple[Pool, ...]:
    return tuple(resolve_pool(spec) for spec in specs)


def quota_limits(spec: Quotas) -> dict[tuple[str, str], int]:
    """vCPU quota per (capacity type, bucket)."""
    return {
        (ON_DEMAND, "P"): spec.on_demand_p,
        (ON_DEMAND, "G"): spec.on_demand_g,
        (SPOT, "P"): spec.spot_p,
        (SPOT, "G"): spec.spot_g,
    }


def pool_order(pools: list[Pool]) -> list[Pool]:
    """Where pods look for capacity: on-prem pools first (their nodes exist and are paid for;
    Karpenter's weights do not cover them), then by Karpenter weight, highest first, pools
    without a weight after weighted ones, ties by name."""
    return sorted(pools, key=lambda p: (p.on_prem is None, -(p.weight or 0), p.name))
