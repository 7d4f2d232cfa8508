"""The resolved fleet: what every consumer works from once the spec is valid.

Frozen dataclasses, no YAML or pydantic left: tiers in cascade order with their health-check
URLs resolved, and the fallback policy as typed values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urljoin

from tiergate.errors import SpecIssue
from tiergate.ledger.pricing import FREE, Price
from tiergate.spec.cluster import ClusterSpec
from tiergate.spec.comparator import Threshold
from tiergate.spec.deployments import Deployment
from tiergate.spec.governance import Governance, Pricing, Tracing
from tiergate.spec.models import FleetSpec, ModelEntry
from tiergate.spec.nodepools import NodeSections
from tiergate.spec.scaling import ScalingEntry
from tiergate.spec.simulation import Simulation

# Used when a fleet gives no fallbackConditions: the statuses that mean "this tier cannot serve
# now" rather than "this request is wrong". Connection errors and timeouts always fall back.
DEFAULT_FALLBACK_STATUS_CODES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class HealthProbe:
    """An active health check, resolved to an absolute URL and seconds."""

    url: str
    interval_s: float
    timeout_s: float
    unhealthy_threshold: int
    healthy_threshold: int


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-attempt limits on one upstream, in seconds.

    ``first_byte_s`` is the tier's own limit on its response headers; the routing's
    ``latencyMs`` is applied by the cascade on top of it, and only while another tier is left.
    ``idle_s`` bounds the silence between two chunks of a response body.
    """

    connect_s: float
    first_byte_s: float
    total_s: float
    idle_s: float


@dataclass(frozen=True, slots=True)
class SpilloverLimits:
    """When a tier counts as saturated, from its engines' vLLM metrics."""

    metrics_urls: tuple[str, ...]
    max_waiting: float | None
    max_kv_cache_usage: float | None
    scrape_interval_s: float
    stale_after_s: float


@dataclass(frozen=True, slots=True)
class Tier:
    """One upstream the cascade can send a request to."""

    name: str
    provider: str
    model: str
    base_url: str | None
    priority: int | None
    price_per_1k_tokens: float | None
    max_tokens: int | None
    region: str | None
    health: HealthProbe | None
    timeouts: Timeouts
    spillover: SpilloverLimits | None = None
    api_key: str | None = field(default=None, repr=False)
    price: Price = FREE
    gpu_pool: tuple[float, int] | None = None  # (USD per GPU-hour, GPUs) when priced so
    gpu_elastic: bool = False  # pricing.gpuPool: elastic (GPUs billed by node, not a count)


@dataclass(frozen=True, slots=True)
class FallbackPolicy:
    """When a request moves on to the next tier (seed: ``fallbackConditions``)."""

    status_codes: frozenset[int]
    latency_ms: Threshold | None
    error_rate: Threshold | None


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """Sliding window and cool-down of the error-rate breaker."""

    window_s: float
    min_requests: int
    cooldown_s: float


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    max_body_bytes: int
    drain_timeout_s: float
    header_timeout_s: float
    body_timeout_s: float


@dataclass(frozen=True, slots=True)
class Fleet:
    """A validated fleet: the cascade, the tiers outside it, and the fallback policy."""

    source: str
    default_model: str
    cascade: tuple[Tier, ...]
    standalone: tuple[Tier, ...]
    fallback: FallbackPolicy
    breaker: BreakerSettings
    gateway: GatewaySettings
    warnings: tuple[SpecIssue, ...] = ()
    governance: Governance | None = None
    tracing: Tracing | None = None
    scaling: tuple[ScalingEntry, ...] = ()
    deployments: tuple[Deployment, ...] = ()
    simulation: Simulation = field(default_factory=Simulation)
    nodes: NodeSections = field(default_factory=NodeSections)  # nodePools and quotas
    cluster: ClusterSpec = field(default_factory=ClusterSpec)

    @property
    def tiers(self) -> tuple[Tier, ...]:
        """Every tier: the cascade in order, then those outside it."""
        return self.cascade + self.standalone

    def tier(self, name: str) -> Tier:
        """The tier called ``name``; KeyError if there is none."""
        for tier in self.tiers:
            if tier.name == name:
                return tier
        raise KeyError(name)


def resolve(spec: FleetSpec, source: str, warnings: tuple[SpecIssue, ...] = ()) -> Fleet:
    """Build the :class:`Fleet` of a spec that passed validation and reference checks."""
    by_name = {entry.name: entry for entry in spec.models}
    routing = spec.routing
    if routing.cascade_order:
        order = list(routing.cascade_order)
    else:
        # No explicit order: by priority (entries without one last), then file order.
        ranked = sorted(
            enumerate(spec.models), key=lambda p: (p[1].priority is None, p[1].priority or 0, p[0])
        )
        order = [entry.name for _, entry in ranked]
    fallback = _fallback(spec)
    cascade = tuple(_tier(by_name[name]) for name in order)
    standalone = tuple(_tier(e) for e in spec.models if e.name not in order)
    breaker = routing.breaker
    return Fleet(
        source=source,
        default_model=routing.default_model or order[0],
        cascade=cascade,
        standalone=standalone,
        fallback=fallback,
        breaker=BreakerSettings(
            window_s=breaker.window_ms / 1000,
            min_requests=breaker.min_requests,
            cooldown_s=breaker.cooldown_ms / 1000,
        ),
        gateway=GatewaySettings(
            max_body_bytes=spec.gateway.max_body_bytes,
            drain_timeout_s=spec.gateway.drain_timeout_ms / 1000,
            header_timeout_s=spec.gateway.header_timeout_ms / 1000,
            body_timeout_s=spec.gateway.body_timeout_ms / 1000,
        ),
        warnings=warnings,
        governance=spec.governance,
        tracing=spec.tracing,
        scaling=tuple(spec.scaling),
        deployments=tuple(spec.deployments),
        simulation=spec.simulation,
        nodes=NodeSections.model_construct(node_pools=spec.node_pools, quotas=spec.quotas),
        cluster=spec.cluster,
    )


def _fallback(spec: FleetSpec) -> FallbackPolicy:
    conditions = spec.routing.fallback_conditions
    if conditions is None:
        return FallbackPolicy(DEFAULT_FALLBACK_STATUS_CODES, None, None)
    codes: set[int] = set()
    latency: Threshold | None = None
    error_rate: Threshold | None = None
    for condition in conditions:
        codes.update(condition.status_code or ())
        latency = condition.latency_ms or latency
        error_rate = condition.error_rate or error_rate
    return FallbackPolicy(frozenset(codes), latency, error_rate)


def _tier(entry: ModelEntry) -> Tier:
    health = None
    check = entry.health_check
    if check is not None and entry.base_url is not None and entry.provider != "bedrock":
        health = HealthProbe(
            url=urljoin(entry.base_url, check.endpoint),
            interval_s=check.interval_ms / 1000,
            timeout_s=check.timeout_ms / 1000,
            unhealthy_threshold=check.unhealthy_threshold,
            healthy_threshold=check.healthy_threshold,
        )
    return Tier(
        name=entry.name,
        provider=entry.provider,
        model=entry.model,
        base_url=entry.base_url,
        priority=entry.priority,
        price_per_1k_tokens=entry.cost_per_1k_tokens,
        max_tokens=entry.max_tokens,
        region=entry.region,
        health=health,
        timeouts=Timeouts(
            connect_s=entry.timeouts.connect_ms / 1000,
            # Not the routing's latencyMs: that one only moves on to another tier (the cascade
            # applies it per attempt), the last tier waits up to its own limits.
            first_byte_s=(entry.timeouts.first_byte_ms or entry.timeouts.total_ms) / 1000,
            total_s=entry.timeouts.total_ms / 1000,
            idle_s=entry.timeouts.idle_ms / 1000,
        ),
        spillover=_spillover(entry),
        api_key=entry.api_key,
        price=_price(entry),
        gpu_pool=_gpu_pool(entry.pricing),
        gpu_elastic=entry.pricing is not None and entry.pricing.gpu_pool == "elastic",
    )


def _price(entry: ModelEntry) -> Price:
    pricing = entry.pricing
    if pricing is None or pricing.input is None or pricing.output is None:
        return Price.flat(entry.cost_per_1k_tokens) if entry.cost_per_1k_tokens else FREE
    scale = 1e-3 if pricing.per == "1k" else 1e-6
    cached = pricing.input if pricing.cached_input is None else pricing.cached_input
    written = pricing.input if pricing.cache_write is None else pricing.cache_write
    return Price(pricing.input * scale, pricing.output * scale, cached * scale, written * scale)


def _gpu_pool(pricing: Pricing | None) -> tuple[float, int] | None:
    if pricing is None or pricing.gpu_hour_usd is None or pricing.gpus is None:
        return None
    return (pricing.gpu_hour_usd, pricing.gpus)


def _spillover(entry: ModelEntry) -> SpilloverLimits | None:
    spill = entry.spillover
    if spill is None:
        return None
    urls = spill.metrics_urls or ([urljoin(entry.base_url, "/metrics")] if entry.base_url else [])
    return SpilloverLimits(
        metrics_urls=tuple(urls),
        max_waiting=spill.max_waiting,
        max_kv_cache_usage=spill.max_kv_cache_usage,
        scrape_interval_s=spill.scrape_interval_ms / 1000,
        stale_after_s=spill.stale_after_ms / 1000,
    )
