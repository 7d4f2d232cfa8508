"""The fleet spec's node sections: ``nodePools`` (Karpenter NodePools and fixed on-prem
nodes) and ``quotas`` (EC2 vCPU quotas), as the simulator reads them.

Field names and defaults follow Karpenter v1's NodePool (kubernetes-sigs/karpenter
``pkg/apis/v1/nodepool.go``; aws/karpenter-provider-aws docs, concepts/disruption and
concepts/nodepools) where Karpenter has the field; start-up figures are the published ones
cited on each default.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from tiergate.perf.catalog import gpu_named, instance_named
from tiergate.sim.distributions import Distribution, DistributionField
from tiergate.spec.base import SpecModel

# Karpenter's patterns: budget durations are hours/minutes; consolidateAfter any Go duration
# of s/m/h, or Never.
_BUDGET_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:0s)?$")
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_NODES = re.compile(r"^(?:(100|[0-9]{1,2})%|([0-9]+))$")

# Spot Instance Advisor's lowest band is "<5%" of instances reclaimed over the trailing month;
# its upper edge over a 730-hour month (AWS's billing month) is 0.05 / 730 ≈ 6.8e-5 per hour.
DEFAULT_SPOT_INTERRUPTIONS_PER_INSTANCE_HOUR = 0.05 / 730


def parse_duration_s(text: str, *, budget: bool = False) -> float:
    """Seconds in a duration such as ``30s``, ``5m``, ``8h``, ``1h30m``; ``ValueError``
    otherwise. Budget durations (``budget=True``) allow hours and minutes only (Karpenter)."""
    if budget:
        match = _BUDGET_DURATION.match(text)
        if match is None or not any(match.groups()):
            raise ValueError(f"duration {text!r} must be hours and/or minutes, e.g. 8h, 30m, 1h30m")
        hours, minutes = (int(g or 0) for g in match.groups())
        return hours * 3600.0 + minutes * 60.0
    match = _DURATION.match(text)
    if match is None or not any(match.groups()):
        raise ValueError(f"duration {text!r} must look like 30s, 5m, 1h30m (or Never)")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return hours * 3600.0 + minutes * 60.0 + seconds


class Budget(SpecModel):
    """One disruption budget: at most ``nodes`` (a count or a percentage of the pool's nodes,
    rounded up) disrupted at once; with ``schedule`` (cron, UTC) only for ``duration`` after
    each fire time; ``reasons`` limits which disruptions it counts (all when omitted)."""

    nodes: int | str = Field(default="10%")
    schedule: str | None = None
    duration: str | None = None
    reasons: tuple[Literal["Empty", "Underutilized", "Drifted"], ...] | None = None

    @field_validator("nodes")
    @classmethod
    def _nodes(cls, value: int | str) -> int | str:
        if isinstance(value, int):
            if value < 0:
                raise ValueError(f"nodes must be >= 0, got {value}")
            return value
        if _NODES.match(value) is None:
            raise ValueError(f'nodes must be a count or a percentage such as "10%", got {value!r}')
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is not None:
            # Imported here: spec sits below sim (the cron matcher imports nothing of ours).
            from tiergate.sim.cron import parse_cron  # noqa: PLC0415

            parse_cron(value)
        return value

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration_s(value, budget=True)
        return value

    @model_validator(mode="after")
    def _together(self) -> Budget:
        if (self.schedule is None) != (self.duration is None):
            raise ValueError("schedule and duration must be given together (Karpenter)")
        return self

    @property
    def duration_s(self) -> float | None:
        return None if self.duration is None else parse_duration_s(self.duration, budget=True)


class Disruption(SpecModel):
    """When Karpenter may remove a pool's nodes (``spec.disruption``)."""

    consolidation_policy: Literal["WhenEmpty", "WhenEmptyOrUnderutilized"] = (
        "WhenEmptyOrUnderutilized"
    )
    consolidate_after: str = "0s"
    budgets: tuple[Budget, ...] = Field(default=(Budget(),), max_length=50)

    @field_validator("consolidate_after")
    @classmethod
    def _after(cls, value: str) -> str:
        if value != "Never":
            parse_duration_s(value)
        return value

    @property
    def consolidate_after_s(self) -> float | None:
        """Seconds a node must stay unchanged before consolidation; ``None``: ``Never``."""
        return (
            None if self.consolidate_after == "Never" else parse_duration_s(self.consolidate_after)
        )


class PoolLimits(SpecModel):
    """Caps on what a pool may hold (Karpenter ``spec.limits``: ``nvidia.com/gpu``, nodes)."""

    gpus: int | None = Field(default=None, ge=0)
    nodes: int | None = Field(default=None, ge=0)


class PriceOverride(SpecModel):
    """A pool's own prices for one instance type, USD per instance-hour."""

    on_demand_usd_per_hour: float | None = Field(default=None, ge=0)
    spot_usd_per_hour: float | None = Field(default=None, ge=0)


class Startup(SpecModel):
    """How long each phase of a replica's start takes, in seconds (distributions)."""

    # 80-120 s to provision and boot a GPU instance (tensorfuse.io, lazy-loading post).
    launch_s: DistributionField = Field(default_factory=lambda: Distribution.uniform(80.0, 120.0))
    # 15-20 GB images take 4-6 min to pull (AWS ML blog, SOCI on DLAMI/DLC).
    image_pull_s: DistributionField = Field(
        default_factory=lambda: Distribution.uniform(240.0, 360.0)
    )
    # An image already on the node (or on a pre-cached data volume): container creation only.
    image_pull_cached_s: DistributionField = Field(
        default_factory=lambda: Distribution.uniform(2.0, 5.0)
    )
    # Process start, CUDA context, graph capture (tiergate.perf.roofline.ENGINE_INIT_S).
    engine_start_s: DistributionField = Field(default_factory=lambda: Distribution.fixed(30.0))
    image_cached: bool = False


class OnPremCosts(SpecModel):
    """What owning one node costs: purchase amortized over its life, power and hosting."""

    purchase_usd_per_node: float = Field(ge=0)
    lifetime_years: float = Field(default=4, gt=0)
    power_kw_per_node: float = Field(ge=0)
    usd_per_kwh: float = Field(ge=0)
    hosting_usd_per_node_hour: float = Field(default=0, ge=0)

    @property
    def usd_per_node_hour(self) -> float:
        """Amortization (8,760 hours a year) plus power plus hosting, per node-hour."""
        return (
            self.purchase_usd_per_node / (self.lifetime_years * 8760)
            + self.power_kw_per_node * self.usd_per_kwh
            + self.hosting_usd_per_node_hour
        )


class OnPrem(SpecModel):
    """Fixed, always-on nodes (a hybrid cluster's own GPUs)."""

    nodes: int = Field(ge=1)
    gpu: str
    gpus_per_node: int = Field(ge=1)
    vcpus: int | None = Field(default=None, ge=1)
    costs: OnPremCosts
    # Weights of a restarted replica come from the node's local disk (NVMe) by default.
    storage: Literal["nvme", "s3", "fsx", "efs", "hub"] = "nvme"

    @field_validator("gpu")
    @classmethod
    def _gpu(cls, value: str) -> str:
        try:
            return gpu_named(value).name
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None


class NodePool(SpecModel):
    """A Karpenter NodePool (cloud) or a set of on-prem nodes (``onPrem``)."""

    name: str = Field(min_length=1)
    instance_types: tuple[str, ...] = ()
    capacity_types: tuple[Literal["spot", "on-demand"], ...] = Field(
        default=("on-demand",), min_length=1
    )
    # Karpenter: 1-100, highest tried first; a pool without weight comes after weighted ones.
    weight: int | None = Field(default=None, ge=1, le=100)
    limits: PoolLimits = PoolLimits()
    disruption: Disruption = Disruption()
    prices: dict[str, PriceOverride] = Field(default_factory=dict)
    spot_interruptions_per_instance_hour: float = Field(
        default=DEFAULT_SPOT_INTERRUPTIONS_PER_INSTANCE_HOUR, ge=0
    )
    startup: Startup = Startup()
    on_prem: OnPrem | None = None

    @field_validator("instance_types")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names = []
        for name in value:
            try:
                names.append(instance_named(name).name)
            except KeyError as exc:
                raise ValueError(exc.args[0]) from None
        return tuple(names)

    @model_validator(mode="after")
    def _consistent(self) -> NodePool:
        if self.on_prem is not None:
            if self.instance_types:
                raise ValueError("an onPrem pool has fixed nodes: give no instanceTypes")
            return self
        if not self.instance_types:
            raise ValueError("a cloud pool needs instanceTypes (or onPrem for fixed nodes)")
        stray = sorted(set(self.prices) - set(self.instance_types))
        if stray:
            raise ValueError(f"prices for types the pool does not allow: {', '.join(stray)}")
        for name in self.instance_types:
            for capacity in self.capacity_types:
                if self.price_usd_per_hour(name, capacity) is None:
                    key = "spotUsdPerHour" if capacity == "spot" else "onDemandUsdPerHour"
                    raise ValueError(
                        f"no {capacity} price for {name} in the catalog: give prices.{name}.{key}"
                    )
        return self

    def price_usd_per_hour(self, instance_type: str, capacity_type: str) -> float | None:
        """The pool's price for a type: its own override, else the catalog's."""
        override = self.prices.get(instance_type)
        catalog = instance_named(instance_type)
        if capacity_type == "spot":
            own = override.spot_usd_per_hour if override else None
            return own if own is not None else catalog.spot_usd_h
        own = override.on_demand_usd_per_hour if override else None
        return own if own is not None else catalog.on_demand_usd_h


def _unique_names(pools: tuple[NodePool, ...]) -> tuple[NodePool, ...]:
    seen: set[str] = set()
    for pool in pools:
        if pool.name in seen:
            raise ValueError(f"node pool {pool.name!r} is defined twice")
        seen.add(pool.name)
    return pools


# The ``nodePools:`` section: pool names are unique.
NodePools = Annotated[tuple[NodePool, ...], AfterValidator(_unique_names)]


class Quotas(SpecModel):
    """EC2 vCPU quotas per bucket and capacity type (running and launching instances count).

    On-demand defaults are the seed's: "Running On-Demand P instances" 384 vCPU and "Running
    On-Demand G and VT instances" 64. Spot quotas ("All P Spot Instance Requests", "All G and
    VT Spot Instance Requests") default here to the same figures, an assumption: every quota
    is account- and region-specific (Service Quotas console), so set yours.
    """

    on_demand_p: int = Field(default=384, ge=0)
    on_demand_g: int = Field(default=64, ge=0)
    spot_p: int = Field(default=384, ge=0)
    spot_g: int = Field(default=64, ge=0)


class NodeSections(SpecModel):
    """Both node sections together, as FleetSpec holds them (``nodePools``, ``quotas``)."""

    node_pools: NodePools = ()
    quotas: Quotas = Quotas()
