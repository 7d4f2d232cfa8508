"""The fleet over virtual time, for the report's plots: a sample every ``step_s``.

Per step: requests arriving per second; per tier the ready replicas, the requests per second
they serve at saturation (for the workload's mean lengths so far: the performance model's
saturated throughput), the nodes holding them, and per pool its nodes. A managed tier with a
quota draws its requests per minute as capacity; without one it has none to draw.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tiergate.sim.result import Series

if TYPE_CHECKING:
    from tiergate.sim.run import SimTier, Simulation


class SeriesSampler:
    """Samples ``simulation`` every ``step_s`` from ``step_s`` on; the run counts each
    arrival in :attr:`arrivals`."""

    __slots__ = ("arrivals", "pools", "series", "simulation", "step_s", "tiers")

    def __init__(self, simulation: Simulation, step_s: float) -> None:
        self.simulation = simulation
        self.step_s = step_s
        self.tiers = [tier.name for tier in simulation.fleet.cascade]
        cluster = simulation.cluster
        self.pools = [pool.name for pool in simulation.fleet.nodes.node_pools] if cluster else []
        self.series = Series.empty(0.0, step_s, self.tiers, self.pools)
        for name, managed in simulation.managed.items():
            if managed.requests_per_minute is None:
                del self.series.capacity_per_s[name]  # type: ignore[attr-defined]
        self.arrivals = 0  # since the last sample
        simulation.loop.every(step_s, self._sample, first=step_s)

    def _sample(self) -> None:
        simulation, series = self.simulation, self.series
        series.arrivals_per_s.append(self.arrivals / self.step_s)
        self.arrivals = 0
        for name in self.tiers:
            sim_tier = simulation.gpu.get(name)
            if sim_tier is None:
                rpm = simulation.managed[name].requests_per_minute
                if rpm is not None:  # without a quota, no capacity to draw
                    series.capacity_per_s[name].append(rpm / 60)
                series.replicas[name].append(0.0)
                series.nodes[name].append(0.0)
                continue
            ready = len(sim_tier.tier.replicas)
            series.replicas[name].append(float(ready))
            series.capacity_per_s[name].append(ready * self._replica_rate(sim_tier))
            series.nodes[name].append(self._nodes(sim_tier))
        cluster = simulation.cluster
        if cluster is not None and self.pools:
            counts = cluster.node_counts()
            for pool in self.pools:
                series.pool_nodes[pool].append(float(sum(counts.get(pool, {}).values())))

    def _replica_rate(self, sim_tier: SimTier) -> float:
        """Requests per second one replica serves at saturation, for the workload so far."""
        simulation = self.simulation
        if not simulation.arrived:
            return 0.0
        prompt = max(1, round(simulation.prompt_total / simulation.arrived))
        output = max(1, round(simulation.output_total / simulation.arrived))
        tokens = sim_tier.perf.saturated_throughput(
            prompt, output, sim_tier.deployment.engine.max_num_seqs
        )
        return tokens / output * simulation.options.speed

    def _nodes(self, sim_tier: SimTier) -> float:
        """Nodes holding the tier's pods (a static deployment: one per replica)."""
        cluster = self.simulation.cluster
        if not sim_tier.deployment.node_pools or cluster is None:
            return float(len(sim_tier.tier.replicas))
        pods = cluster.pods(sim_tier.deployment.name)
        return float(len({pod.node.id for pod in pods if pod.node is not None}))
