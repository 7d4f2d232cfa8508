"""One simulation: a fleet, a workload and the loop that runs them in virtual time.

:class:`Simulation` builds, from a validated fleet, the parts the live system would have —
the gateway's cascade (:mod:`tiergate.sim.gateway`: the live walk and breaker), one engine per
ready replica (iteration or request level), the node pools and their pods
(:mod:`tiergate.sim.nodes`), the scaler in either mode (:mod:`tiergate.sim.autoscale`), the
managed API (:mod:`tiergate.sim.managed`) and the faults (:mod:`tiergate.sim.faults`) — and
replays the workload through them. Health probes and spillover scrapes run on the loop at the
fleet's intervals, as the gateway runs them on the wall clock.

Virtual time 0 is the start of the workload; node pools start their initial replicas
``warmup_s`` earlier so that a fleet that has been running is serving when traffic begins.
Nothing before 0 is billed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from tiergate.emulator.scheduler import SchedulerLimits
from tiergate.gateway.breaker import BreakerState
from tiergate.gateway.gates import TierGates
from tiergate.gateway.health import HealthState
from tiergate.gateway.saturation import EngineSample, is_saturated
from tiergate.perf import PerfModel, gpu_named, model_named
from tiergate.sim.autoscale import SimAutoscaler
from tiergate.sim.fast_replica import FastReplica
from tiergate.sim.faults import ActiveFaults, FaultPlan, FaultWindow
from tiergate.sim.gateway import GpuTier, SimGateway
from tiergate.sim.loop import EventLoop
from tiergate.sim.managed import ManagedSettings, ManagedTier
from tiergate.sim.metrics import EngineMetrics, EngineObserver, MeteredSink
from tiergate.sim.nodes import Cluster, Pod, PodSpec
from tiergate.sim.replica import Replica, SimEngine
from tiergate.sim.request import SimRequest
from tiergate.sim.result import EventLog, Series
from tiergate.sim.sampling import SeriesSampler
from tiergate.sim.workloads import TraceRequest
from tiergate.spec import Fleet
from tiergate.spec.deployments import Deployment

Fidelity = Literal["iteration", "request"]


@dataclass(frozen=True, slots=True)
class SimOptions:
    """How to run.

    ``speed`` divides every engine step time (the demo's engines run 12 times faster than the
    model); ``utc_start`` is the UTC wall time of virtual 0 (cron schedules and disruption
    budgets are UTC); ``horizon_s`` the length of the run (faults are drawn up to it, nodes
    billed up to it; default: until the last request ends).
    """

    seed: int = 0
    fidelity: Fidelity = "iteration"
    speed: float = 1.0
    utc_start: datetime = field(default_factory=lambda: datetime(2026, 11, 2, tzinfo=UTC))
    horizon_s: float | None = None
    warmup_s: float = 3600.0
    drain_s: float = 600.0  # after the last arrival, how long requests in flight may finish
    series_step_s: float | None = None  # plot resolution; default: 1/400 of the horizon


class SimTier:
    """A GPU tier's deployment: how its replicas are built and what they have done."""

    __slots__ = ("busy_s", "deployment", "limits", "perf", "tier")

    def __init__(self, deployment: Deployment, tier: GpuTier, perf: PerfModel) -> None:
        engine = deployment.engine
        self.deployment = deployment
        self.tier = tier
        self.perf = perf
        self.limits = SchedulerLimits(
            engine.max_num_seqs, engine.max_num_batched_tokens, engine.block_size
        )
        self.busy_s: dict[str, float] = {}  # capacity type -> busy seconds of replicas gone


class Simulation:
    """A fleet in virtual time; :meth:`run` replays a workload through it."""

    def __init__(self, fleet: Fleet, options: SimOptions) -> None:
        self.fleet = fleet
        self.options = options
        self.loop = EventLoop(start=-options.warmup_s)
        self.rng = random.Random(options.seed)
        self.events = EventLog()
        # Each tier's breaker state as last shown (every breaker starts closed): told after
        # every attempt, so a lookup, not a get() with a default.
        self._breakers = dict.fromkeys((tier.name for tier in fleet.tiers), BreakerState.CLOSED)
        self.gates = TierGates(fleet, on_breaker=self._breaker_changed)
        self.gpu: dict[str, SimTier] = {}
        self.managed: dict[str, ManagedTier] = {}
        self._build_tiers()
        self.gateway = SimGateway(
            self.loop,
            fleet,
            gates=self.gates,
            gpu_tiers={name: tier.tier for name, tier in self.gpu.items()},
            managed=self.managed,
            done=self._done,
            rng=random.Random(self.rng.random()),
        )
        if options.fidelity == "iteration":
            self.gateway.itl_per_token.update(self.gpu)
        self.arrived = 0
        self.finished = 0
        self.in_flight = 0
        self.last_finish = 0.0
        self.on_done: Callable[[SimRequest], None] | None = None
        self.prompt_total = 0  # tokens of every request arrived so far
        self.output_total = 0
        self._slowdown: dict[str, float] = {}
        self.series: Series | None = None
        self.sampler: SeriesSampler | None = None
        self.metrics: dict[SimEngine, EngineMetrics] = {}
        self._engine_serial = 0
        # Each replica not gone: its tier and capacity type (spot, on-demand, on-prem), for
        # GPU-hours busy.
        self.capacity: dict[SimEngine, tuple[str, str]] = {}
        self._start_static()
        self.cluster: Cluster | None = None
        self._pods: dict[str, SimEngine] = {}  # pod id -> its engine, while in rotation
        self._pod_specs: dict[str, PodSpec] = {}  # deployment -> the pods it asks for
        self._deployment_tier: dict[str, str] = {}
        self.node_tier: dict[str, str] = {}  # node id -> the tier whose pods it ran first
        self._spot_rates: dict[str, float] = {}  # pool -> its own spot interruption rate
        self._start_pools()
        self.autoscaler: SimAutoscaler | None = None
        self._start_scaling()
        self._probes()

    # -- building ----------------------------------------------------------------------------

    def _build_tiers(self) -> None:
        deployments = {d.tier: d for d in self.fleet.deployments}
        for tier in self.fleet.cascade:
            deployment = deployments.get(tier.name)
            if deployment is not None:
                perf = PerfModel(
                    model_named(tier.model),
                    gpu_named(deployment.gpu),
                    deployment.tp,
                    gpu_memory_utilization=deployment.engine.gpu_memory_utilization,
                )
                gpu_tier = GpuTier(tier.name, random.Random(self.rng.random()))
                self.gpu[tier.name] = SimTier(deployment, gpu_tier, perf)
            else:
                settings = ManagedSettings.from_spec(
                    tier.model, self.fleet.simulation.managed.get(tier.name)
                )
                self.managed[tier.name] = ManagedTier(settings, random.Random(self.rng.random()))

    def _start_static(self) -> None:
        """Deployments without node pools: their replicas serve from the start."""
        for name, sim_tier in self.gpu.items():
            if not sim_tier.deployment.node_pools:
                for _ in range(sim_tier.deployment.replicas):
                    replica = self._replica(name)
                    self.capacity[replica] = (name, "on-prem")
                    sim_tier.tier.replicas.append(replica)

    def _start_pools(self) -> None:
        """Deployments on node pools: their initial pods, asked for at the warm-up's start."""
        pooled = {name: t for name, t in self.gpu.items() if t.deployment.node_pools}
        if not pooled:
            return
        self.cluster = Cluster.from_spec(
            self.loop,
            self.fleet.nodes,
            random.Random(self.rng.random()),
            self,
            utc_start=self.options.utc_start,
        )
        self._spot_rates = {
            pool.name: pool.spot_interruptions_per_instance_hour
            for pool in self.fleet.nodes.node_pools
        }
        minimum = {entry.deployment: entry.min_replicas for entry in self.fleet.scaling}
        for name, sim_tier in pooled.items():
            deployment = sim_tier.deployment
            spec = PodSpec(
                deployment=deployment.name,
                gpus=deployment.tp,
                weight_bytes=float(sim_tier.perf.weight_bytes),
                storage=deployment.storage,
                pools=tuple(deployment.node_pools),
            )
            self._pod_specs[deployment.name] = spec
            self._deployment_tier[deployment.name] = name
            initial = minimum.get(deployment.name, deployment.replicas)
            self.cluster.set_replicas(spec, max(initial, 0))

    def scale(self, deployment: str, replicas: int) -> None:
        """Ask for ``replicas`` pods of ``deployment`` (what the HPA's rescale does)."""
        spec = self._pod_specs.get(deployment)
        if spec is not None and self.cluster is not None:
            self.cluster.set_replicas(spec, replicas)

    # -- ClusterListener ---------------------------------------------------------------------

    def pod_ready(self, pod: Pod) -> None:
        """A pod's engine is ready: its Service sends it requests from now."""
        tier = self._deployment_tier[pod.spec.deployment]
        replica = self._replica(tier)
        node = pod.node
        self.capacity[replica] = (tier, node.capacity_type if node is not None else "on-demand")
        if node is not None:
            self.node_tier.setdefault(node.id, tier)
        self._pods[pod.id] = replica
        self.gpu[tier].tier.replicas.append(replica)

    def pod_stopping(self, pod: Pod, grace_s: float) -> None:
        """A pod leaves rotation now; what it still runs after ``grace_s`` is cut off."""
        replica = self._pods.pop(pod.id, None)
        if replica is None:
            return
        tier = self._deployment_tier[pod.spec.deployment]
        sim_tier = self.gpu[tier]
        sim_tier.tier.replicas.remove(replica)

        def gone() -> None:
            for request in replica.stop():
                self.gateway.lost(request)
            _, capacity = self.capacity.pop(replica, (tier, "on-demand"))
            self.metrics.pop(replica, None)
            sim_tier.busy_s[capacity] = sim_tier.busy_s.get(capacity, 0.0) + replica.busy_s

        if replica.in_flight:
            self.loop.after(grace_s, gone)
        else:
            gone()

    def _replica(self, tier: str) -> SimEngine:
        """A new engine for ``tier`` at the run's fidelity, with its metrics (what the scaler
        scrapes)."""
        sim_tier = self.gpu[tier]
        self._engine_serial += 1
        name = f"{tier}-{self._engine_serial}"
        replica: SimEngine
        if self.options.fidelity == "request":
            sink = MeteredSink(self.gateway)
            fast = FastReplica(
                self.loop,
                sim_tier.perf,
                sim_tier.limits,
                sink,
                speed=self.options.speed,
                rng=random.Random(self.rng.random()),
            )
            sink.metrics = metrics = EngineMetrics(name, fast.gauges)
            replica = fast
        else:
            engine = Replica(
                self.loop, sim_tier.perf, sim_tier.limits, self.gateway, speed=self.options.speed
            )
            metrics = EngineMetrics(name, engine.gauges)
            engine.observer = EngineObserver(metrics, self.gateway.stats[tier].itl)
            replica = engine
        self.metrics[replica] = metrics
        replica.slowdown = self._slowdown.get(tier, 1.0)
        return replica

    def _engines(self, deployment: str) -> list[EngineMetrics]:
        """The metrics of the deployment's engines in rotation (what Prometheus discovers)."""
        tier = self._deployment_tier.get(deployment)
        if tier is None:
            return []
        return [self.metrics[replica] for replica in self.gpu[tier].tier.replicas]

    def _replica_count(self, deployment: str) -> tuple[int, int, tuple[float, ...]]:
        assert self.cluster is not None
        count = self.cluster.replicas(deployment)
        return count.ready, count.pending, count.pending_ready_at

    def _start_scaling(self) -> None:
        """The fleet's ``scaling`` entries of deployments on node pools, in their modes."""
        entries = tuple(e for e in self.fleet.scaling if e.deployment in self._pod_specs)
        if not entries:
            return
        self.autoscaler = SimAutoscaler(
            self.loop,
            entries,
            self._engines,
            self._replica_count,
            self.scale,
            cluster_settings=self.fleet.cluster,
            utc_start=self.options.utc_start,
        )

    def _probes(self) -> None:
        """The gateway's health checks and spillover scrapes, at the fleet's intervals."""
        for tier in self.fleet.tiers:
            probe = tier.health
            if probe is not None:
                state = HealthState(probe.unhealthy_threshold, probe.healthy_threshold)
                self.loop.every(probe.interval_s, self._prober(tier.name, state), first=0.0)
            if tier.spillover is not None and tier.name in self.gpu:
                self.loop.every(
                    tier.spillover.scrape_interval_s, self._scraper(tier.name), first=0.0
                )

    def _prober(self, name: str, state: HealthState) -> Callable[[], None]:
        gateway = self.gateway

        def probe() -> None:
            if state.record(gateway.serving(name)):
                self.gates.set_up(name, state.up)
                self.events.add(
                    self.loop.now, "health", name, "up again" if state.up else "down: probes fail"
                )

        return probe

    def _scraper(self, name: str) -> Callable[[], None]:
        limits = self.fleet.tier(name).spillover
        assert limits is not None
        tier = self.gpu[name].tier
        gates = self.gates

        # The readings of the last scrape whose verdict was set. Every sample of a scrape is
        # taken now (none is stale), so the live policy's verdict depends on the readings
        # alone: the same readings (an idle tier, a quiet night) would set the same verdict,
        # and the policy is asked again only when a reading changed.
        last: list[tuple[int, float]] | None = None

        def scrape() -> None:
            nonlocal last
            now = self.loop.now
            readings = []
            for replica in tier.replicas:
                _, waiting, kv_usage = replica.gauges()
                readings.append((waiting, kv_usage))
            if readings == last:
                return
            last = readings
            samples = [EngineSample(float(waiting), kv, now) for waiting, kv in readings]
            gates.set_saturated(name, is_saturated(samples, limits, now))

        return scrape

    def _breaker_changed(self, name: str, state: BreakerState) -> None:
        if self._breakers[name] is not state:
            self._breakers[name] = state
            self.events.add(self.loop.now, "breaker", name, f"breaker {state.value}")

    # -- faults ------------------------------------------------------------------------------

    def add_faults(self, windows: Iterable[FaultWindow]) -> None:
        """Apply fault windows (beside the fleet's own ``simulation.faults``)."""
        windows = list(windows)
        active = ActiveFaults(windows)
        targets = {window.target for window in windows}
        for target in targets:
            for at in active.changes(target):
                self.loop.at(at, self._fault_changer(active, target))
        for window in windows:
            self.loop.at(window.start_s, self._fault_event(window))

    def _fault_event(self, window: FaultWindow) -> Callable[[], None]:
        def log() -> None:
            self.events.add(window.start_s, "fault", window.target, _describe(window))

        return log

    def _fault_changer(self, active: ActiveFaults, target: str) -> Callable[[], None]:
        def change() -> None:
            state = active.state(target, self.loop.now)
            if target in self.gateway.faults:
                self.gateway.faults[target] = state
            if target in self.gpu:
                self._slowdown[target] = state.slowdown
                for replica in self.gpu[target].tier.replicas:
                    replica.slowdown = state.slowdown
            base = self._spot_rates.get(target)
            if base is not None and self.cluster is not None:
                rate = base + state.interruptions_per_instance_hour
                self.cluster.set_interruption_rate(target, rate)

        return change

    # -- running -----------------------------------------------------------------------------

    def run(self, workload: Iterable[TraceRequest]) -> float:
        """Replay ``workload`` (arrivals in seconds from 0, in order); return the end of the
        run: the horizon, or the last request's end."""
        options = self.options
        loop = self.loop
        horizon = options.horizon_s
        if self.fleet.simulation.faults:
            plan = FaultPlan.from_spec(self.fleet.simulation.faults)
            self.add_faults(plan.windows(horizon or 0.0, random.Random(self.rng.random())))
        step = options.series_step_s or max(1.0, (horizon or 3600.0) / 400)
        sampler = self.sampler = SeriesSampler(self, step)
        self.series = sampler.series
        loop.run(until=0.0)
        gateway = self.gateway
        next_at = loop.next_at
        last = 0.0
        for item in workload:
            at = item.arrival_s
            if horizon is not None and at >= horizon:
                break
            # Most arrivals find no event due before them (at a few requests per second, the
            # next is a scrape or a finish later on): then moving the clock is all there is.
            due = next_at()
            if due is not None and due <= at:
                loop.run(until=at)
            elif at > loop.now:
                loop.now = at
            request = SimRequest(at, item.prompt_tokens, max(1, item.output_tokens))
            self.arrived += 1
            self.in_flight += 1
            self.prompt_total += request.prompt_tokens
            self.output_total += request.output_tokens
            sampler.arrivals += 1
            gateway.arrive(request)
            last = at
        deadline = last + options.drain_s
        while self.in_flight and loop.now < deadline:
            loop.run(until=min(deadline, loop.now + 10.0))
        end = max(horizon or 0.0, self.last_finish, last)
        loop.run(until=end)
        return end

    def _done(self, request: SimRequest) -> None:
        self.in_flight -= 1
        self.finished += 1
        self.last_finish = self.loop.now
        if self.on_done is not None:
            self.on_done(request)

    # -- what it did -------------------------------------------------------------------------

    def busy_gpu_seconds(self, tier: str) -> dict[str, float]:
        """GPU-seconds the tier's engines had work, by capacity type (replicas gone
        included)."""
        sim_tier = self.gpu[tier]
        busy = dict(sim_tier.busy_s)
        for replica, (owner, capacity) in self.capacity.items():  # serving or draining
            if owner == tier:
                busy[capacity] = busy.get(capacity, 0.0) + replica.busy_s
        return {capacity: seconds * sim_tier.deployment.tp for capacity, seconds in busy.items()}


def _describe(window: FaultWindow) -> str:
    length = f"{window.end_s - window.start_s:g} s"
    if window.kind == "outage":
        return f"outage for {length}"
    if window.kind == "slowdown":
        return f"steps {window.factor:g}x slower for {length}"
    if window.kind == "errors":
        return f"{window.rate:.0%} of requests answer {window.status} for {length}"
    return f"{window.kind} for {length}"
