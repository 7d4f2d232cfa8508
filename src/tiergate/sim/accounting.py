"""A finished simulation as a :class:`~tiergate.sim.result.SimResult`: its costs through the
one cost accounting (:mod:`tiergate.cost`), its latencies, its SLO and its series.

GPU tiers cost their nodes (:class:`tiergate.cost.NodeUsage`, billed per second from launch
to termination, or every hour for fixed GPUs); managed tiers their tokens at dated prices.
Nothing is priced per token from an assumed utilization.
"""

from __future__ import annotations

from collections.abc import Sequence

from tiergate.cost import CapacityType, CostBook, NodeUsage, TokenPrices
from tiergate.ledger.pricing import FREE
from tiergate.sim.managed import managed_price
from tiergate.sim.result import (
    CapacityCost,
    EventLog,
    Fidelity,
    SimResult,
    SloResult,
    TierKind,
    TierResult,
)
from tiergate.sim.result import peak_rss_mib as _peak_rss
from tiergate.sim.run import Simulation
from tiergate.spec import Fleet

STATIC_POOL = "static"  # the replicas of a deployment without node pools


def managed_prices(fleet: Fleet, tiers: Sequence[str]) -> dict[str, TokenPrices]:
    """Each managed tier's token prices: its ``models[].pricing``, else the dated table's
    (``simulation.managed.TIER.priceSource`` picks among the table's sources)."""
    prices = {}
    for name in tiers:
        tier = fleet.tier(name)
        if tier.price != FREE:
            prices[name] = TokenPrices(tier.price, "", "the fleet spec's models[].pricing")
            continue
        section = fleet.simulation.managed.get(name)
        found = managed_price(tier.model, price_source=section.price_source if section else None)
        prices[name] = TokenPrices(found.price, found.as_of, found.source)
    return prices


def static_nodes(simulation: Simulation) -> list[NodeUsage]:
    """The fixed GPUs of deployments without node pools, billed every hour of the run at
    their tier's ``pricing.gpuHourUsd`` (0 without one: the summary says so)."""
    nodes = []
    for name, sim_tier in simulation.gpu.items():
        deployment = sim_tier.deployment
        if deployment.node_pools:
            continue
        pool = simulation.fleet.tier(name).gpu_pool
        usd_per_gpu_hour = pool[0] if pool is not None else 0.0
        for _ in range(deployment.replicas):
            nodes.append(
                NodeUsage(
                    pool=STATIC_POOL,
                    instance_type=f"{deployment.tp}x{deployment.gpu}",
                    capacity_type="on-prem",
                    gpus=deployment.tp,
                    usd_per_hour=usd_per_gpu_hour * deployment.tp,
                    launched_at=0.0,
                    terminated_at=None,
                    tier=name,
                )
            )
    return nodes


def pool_nodes(simulation: Simulation) -> list[NodeUsage]:
    """Every node the pools launched (and the on-prem ones), each billed to the tier whose
    pods it ran first (a node that never ran one: the first tier using its pool)."""
    cluster = simulation.cluster
    if cluster is None:
        return []
    by_pool: dict[str, str] = {}
    for name, sim_tier in simulation.gpu.items():
        for pool in sim_tier.deployment.node_pools:
            by_pool.setdefault(pool, name)
    nodes = []
    for node in cluster.all_nodes():
        tier = simulation.node_tier.get(node.id) or by_pool.get(node.pool)
        if tier is None:
            continue  # a pool no deployment uses: nothing runs there
        nodes.append(
            _clipped(
                NodeUsage(
                    pool=node.pool,
                    instance_type=node.instance_type,
                    capacity_type=_capacity(node.capacity_type),
                    gpus=node.gpus,
                    usd_per_hour=node.usd_per_hour,
                    launched_at=node.launched_at,
                    terminated_at=node.terminated_at,
                    interrupted_by_provider=node.interrupted_by_provider,
                    tier=tier,
                )
            )
        )
    return nodes


def _capacity(kind: str) -> CapacityType:
    if kind == "spot":
        return "spot"
    return "on-prem" if kind == "on-prem" else "on-demand"


def build_result(
    simulation: Simulation,
    *,
    end: float,
    wall_s: float,
    trace: str,
) -> SimResult:
    """The result of ``simulation`` run to ``end`` (virtual seconds), in ``wall_s``."""
    fleet = simulation.fleet
    managed = managed_prices(fleet, list(simulation.managed))
    book = CostBook(managed=managed, order=[tier.name for tier in fleet.cascade])
    book.add_nodes(static_nodes(simulation))
    book.add_nodes(pool_nodes(simulation))
    stats = simulation.gateway.stats
    for name in simulation.gpu:
        for capacity, seconds in simulation.busy_gpu_seconds(name).items():
            book.add_busy(name, seconds, capacity)
    for tier in fleet.cascade:
        served = stats[tier.name]
        book.add_tokens(tier.name, served.input_tokens, served.output_tokens)
    by_tier = {row.tier: row for row in book.tiers(end)}
    capacities: dict[str, list[CapacityCost]] = {}
    for line in book.rows(end):
        capacities.setdefault(line.tier, []).append(
            CapacityCost(line.capacity_type, line.gpu_hours_billed, line.cost_usd)
        )
    tiers = []
    for tier in fleet.cascade:
        served = stats[tier.name]
        row = by_tier.get(tier.name)
        kind = _kind(tier.name, simulation, capacities.get(tier.name, []))
        note = (
            managed[tier.name].label if tier.name in managed else _gpu_note(simulation, tier.name)
        )
        tiers.append(
            TierResult(
                name=tier.name,
                kind=kind,
                requests=served.requests,
                input_tokens=served.input_tokens,
                output_tokens=served.output_tokens,
                cost_usd=row.cost_usd if row else 0.0,
                gpu_hours_billed=row.gpu_hours_billed if row else 0.0,
                gpu_hours_busy=row.gpu_hours_busy if row else 0.0,
                ttft=served.ttft,
                itl=served.itl,
                fallbacks_by_reason=dict(served.fallbacks),
                by_capacity=tuple(capacities.get(tier.name, [])),
                price_note=note,
            )
        )
    failed = simulation.gateway.failed
    slo = SloResult.of(
        tiers,
        failed=sum(failed.values()),
        target_s=fleet.simulation.slo.ttft_p95_s,
    )
    series = simulation.series
    assert series is not None
    events = all_events(simulation)
    fidelity: Fidelity = simulation.options.fidelity
    return SimResult(
        fleet=fleet.source,
        trace=trace,
        seed=simulation.options.seed,
        fidelity=fidelity,
        start_s=0.0,
        duration_s=end,
        wall_s=wall_s,
        requests_total=simulation.arrived,
        requests_served=sum(tier.requests for tier in tiers),
        failed_by_status={str(status): count for status, count in sorted(failed.items())},
        tiers=tuple(tiers),
        slo=slo,
        series=series,
        events=tuple(events.events),
        events_dropped=events.dropped,
        event_counts=dict(events.counts),
        peak_rss_mib=_peak_rss(),
    )


def all_events(simulation: Simulation) -> EventLog:
    """The run's events in time order: the gateway's (breakers, health, faults), the
    scaler's rescales and the nodes' launches, terminations and interruptions."""
    found: list[tuple[float, str, str, str]] = [
        (e.at, e.kind, e.subject, e.text) for e in simulation.events.events
    ]
    if simulation.autoscaler is not None:
        for scale in simulation.autoscaler.events:
            text = f"{scale.before} -> {scale.after} ({scale.by}): {scale.reason}"
            found.append((scale.at, "scale", scale.deployment, text))
    if simulation.cluster is not None:
        for event in simulation.cluster.events:
            found.append((event.t, f"node {event.kind}", "", event.text))
    log = EventLog()
    for at, kind, subject, text in sorted(found, key=lambda e: e[0]):
        if at >= 0:  # the warm-up's start of the initial pods is not part of the run
            log.add(at, kind, subject, text)
    log.dropped += simulation.events.dropped
    return log


def _clipped(node: NodeUsage) -> NodeUsage:
    """A node launched during the warm-up, billed from 0 (the run's start)."""
    if node.launched_at >= 0:
        return node
    terminated = node.terminated_at
    if terminated is not None and terminated <= 0:
        terminated = 0.0
    return NodeUsage(
        pool=node.pool,
        instance_type=node.instance_type,
        capacity_type=node.capacity_type,
        gpus=node.gpus,
        usd_per_hour=node.usd_per_hour,
        launched_at=0.0,
        terminated_at=terminated,
        interrupted_by_provider=node.interrupted_by_provider,
        tier=node.tier,
    )


def _kind(name: str, simulation: Simulation, capacities: list[CapacityCost]) -> TierKind:
    if name in simulation.managed:
        return "managed"
    types = {c.capacity_type for c in capacities}
    return "on-prem" if types == {"on-prem"} else "cloud"


def _gpu_note(simulation: Simulation, name: str) -> str:
    deployment = simulation.gpu[name].deployment
    what = f"{deployment.tp} x {deployment.gpu} per replica"
    if deployment.node_pools:
        return f"{what}, nodes from {', '.join(deployment.node_pools)}"
    pool = simulation.fleet.tier(name).gpu_pool
    if pool is None:
        return f"{what}, fixed; no GPU price (models[].pricing.gpuHourUsd): cost 0"
    return f"{what}, fixed, ${pool[0]:g}/GPU-hour every hour"
