"""The cluster in virtual time: pods pending until a node fits them, Karpenter's launches
within pool limits and EC2 quotas, start-up phases, spot interruptions and consolidation.

Driven by the simulator's :class:`~tiergate.sim.loop.EventLoop`; every random draw comes from
the injected ``random.Random``, so a run is deterministic for a seed. The scaler sets desired
replicas (:meth:`Cluster.set_replicas`); the engines hear of pods through a
:class:`ClusterListener`. Karpenter's periodic work (the disruption pass and retries of pods
that could not be placed) runs every ``disruption_interval_s`` (10 s: Karpenter's disruption
controller polls every 10 s), at multiples of it from t=0, only while the cluster has cloud
nodes or pending pods, so an idle cluster leaves the loop free to finish.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from tiergate.scaling.snapshot import ReplicaCount
from tiergate.sim.loop import EventLoop, Timer
from tiergate.sim.nodes.budgets import allowed_disruptions
from tiergate.sim.nodes.placement import choose_offer, fit_on, replicaset_victims
from tiergate.sim.nodes.pools import (
    ON_PREM,
    SPOT,
    WEIGHT_LOAD_BYTES_PER_S,
    Offer,
    Pool,
    pool_order,
    quota_limits,
    resolve_pools,
)
from tiergate.sim.nodes.state import (
    BATCH_S,
    DELETING,
    DISRUPTION_INTERVAL_S,
    GONE,
    LAUNCHING,
    NODE_READY,
    PENDING,
    READY,
    SPOT_NOTICE_S,
    STARTING,
    STOPPING,
    TERMINATED,
    TERMINATION_GRACE_S,
    ClusterEvent,
    ClusterListener,
    Node,
    NodeRecord,
    Pod,
    PodSpec,
)
from tiergate.spec.nodepools import NodeSections


class Cluster:
    """Pods, nodes and Karpenter over ``pools`` with EC2 vCPU ``quotas`` per (capacity type,
    bucket) (:func:`~tiergate.sim.nodes.pools.quota_limits`). ``utc_start`` is the UTC wall
    time of virtual t=0, for budget schedules."""

    def __init__(
        self,
        loop: EventLoop,
        pools: Sequence[Pool],
        quotas: Mapping[tuple[str, str], int],
        rng: random.Random,
        listener: ClusterListener,
        *,
        utc_start: datetime,
        disruption_interval_s: float = DISRUPTION_INTERVAL_S,
        batch_s: float = BATCH_S,
    ) -> None:
        self._loop = loop
        self._pools = {pool.name: pool for pool in pools}
        self._order = pool_order(list(pools))
        self._quotas = dict(quotas)
        self._rng = rng
        self._listener = listener
        self._utc_start = utc_start if utc_start.tzinfo else utc_start.replace(tzinfo=UTC)
        self._interval = disruption_interval_s
        self._batch_s = batch_s
        self._live: dict[str, list[Node]] = {pool.name: [] for pool in pools}
        self._all: list[Node] = []
        self._pods: dict[str, list[Pod]] = {}
        self._pending: list[Pod] = []
        self._quota_used: dict[tuple[str, str], int] = {}
        self._spot_rate = {pool.name: pool.spot_interruptions_per_hour for pool in pools}
        self._blocked: set[tuple[str, str]] = set()
        self._provision_timer: Timer | None = None
        self._tick_timer: Timer | None = None
        self._serials: dict[str, int] = {}
        self._version = 0  # bumped by every change of placement or node state
        self.events: list[ClusterEvent] = []
        for pool in pools:
            if pool.on_prem is not None:
                own = pool.on_prem
                offer = Offer(
                    f"on-prem/{own.gpu}", ON_PREM, own.gpus_per_node, own.vcpus, "",
                    own.usd_per_node_hour,
                )  # fmt: skip
                for _ in range(own.nodes):
                    node = Node(
                        self._name("node"),
                        pool.name,
                        offer,
                        loop.now,
                        loop.now,
                        storage=own.storage,
                    )
                    node.state = NODE_READY
                    self._live[pool.name].append(node)
                    self._all.append(node)

    @classmethod
    def from_spec(
        cls,
        loop: EventLoop,
        sections: NodeSections,
        rng: random.Random,
        listener: ClusterListener,
        *,
        utc_start: datetime,
    ) -> Cluster:
        """The cluster of a fleet spec's ``nodePools`` and ``quotas``."""
        return cls(
            loop,
            resolve_pools(sections.node_pools),
            quota_limits(sections.quotas),
            rng,
            listener,
            utc_start=utc_start,
        )

    # --- what the scaler and the engines call -------------------------------------------

    def set_replicas(self, spec: PodSpec, replicas: int) -> None:
        """Make ``spec.deployment`` have ``replicas`` pods from now: new ones pending, or the
        surplus deleted in ReplicaSet order (ready ones leave with a 30 s grace)."""
        unknown = [name for name in spec.pools if name not in self._pools]
        if unknown or not spec.pools:
            raise ValueError(
                f"{spec.deployment}: unknown pools {unknown or '(none given)'}; "
                f"known: {', '.join(self._pools)}"
            )
        if spec.storage not in WEIGHT_LOAD_BYTES_PER_S:
            raise ValueError(
                f"{spec.deployment}: unknown storage {spec.storage!r}; "
                f"known: {', '.join(WEIGHT_LOAD_BYTES_PER_S)}"
            )
        live = [p for p in self._pods.get(spec.deployment, ()) if p.state != STOPPING]
        if replicas > len(live):
            for _ in range(replicas - len(live)):
                self._new_pod(spec)
        elif replicas < len(live):
            now = self._loop.now
            for pod in replicaset_victims(live, len(live) - replicas, _replicaset_rank(now)):
                self._delete_pod(pod, TERMINATION_GRACE_S)

    def replicas(self, deployment: str) -> ReplicaCount:
        """Ready and pending pods of ``deployment``, and the expected ready times of the
        pending ones already placed on a node (what the scaler's ReplicaSource reports)."""
        ready = pending = 0
        ready_at: list[float] = []
        for pod in self._pods.get(deployment, ()):
            if pod.state == READY:
                ready += 1
            elif pod.state in (PENDING, STARTING):
                pending += 1
                if pod.ready_at is not None:
                    ready_at.append(pod.ready_at)
        return ReplicaCount(ready, pending, tuple(sorted(ready_at)))

    def interrupt(self, pool: str, count: int) -> int:
        """Send the spot notice to ``count`` of the pool's running spot nodes (chosen by the
        rng), as a spot storm would; returns how many got it."""
        nodes = [n for n in self._live[pool] if n.capacity_type == SPOT and n.state != DELETING]
        chosen = self._rng.sample(nodes, min(count, len(nodes)))
        for node in chosen:
            self._spot_notice(node)
        return len(chosen)

    def set_interruption_rate(self, pool: str, rate_per_instance_hour: float) -> None:
        """Change the pool's spot interruption rate from now (interruptions are memoryless, so
        every running spot node's next one is drawn anew)."""
        self._spot_rate[pool] = rate_per_instance_hour
        for node in self._live[pool]:
            if node.capacity_type == SPOT and node.state != DELETING:
                self._schedule_interruption(node)

    # --- views --------------------------------------------------------------------------

    def pods(self, deployment: str) -> list[Pod]:
        """The deployment's pods that are not gone."""
        return list(self._pods.get(deployment, ()))

    def nodes(self, pool: str) -> list[Node]:
        """The pool's nodes that are not terminated."""
        return list(self._live[pool])

    def node_counts(self) -> dict[str, dict[str, int]]:
        """Per pool, nodes now by state (launching, ready, deleting)."""
        counts: dict[str, dict[str, int]] = {}
        for name, nodes in self._live.items():
            by_state = {LAUNCHING: 0, NODE_READY: 0, DELETING: 0}
            for node in nodes:
                by_state[node.state] += 1
            counts[name] = by_state
        return counts

    def all_nodes(self) -> list[Node]:
        """Every node ever launched (on-prem ones from t=0), terminated ones included."""
        return list(self._all)

    def node_records(self) -> list[NodeRecord]:
        """Every node ever launched (on-prem ones from t=0), for billing."""
        return [
            NodeRecord(
                n.pool,
                n.instance_type,
                n.capacity_type,
                n.gpus,
                n.usd_per_hour,
                n.launched_at,
                n.terminated_at,
                n.interrupted_by_provider,
            )
            for n in self._all
        ]

    # --- pods ---------------------------------------------------------------------------

    def _name(self, prefix: str) -> str:
        """``prefix-N``, numbered per prefix (a deployment's pods, nodes) from 1."""
        serial = self._serials.get(prefix, 0) + 1
        self._serials[prefix] = serial
        return f"{prefix}-{serial}"

    def _new_pod(self, spec: PodSpec) -> Pod:
        pod = Pod(self._name(spec.deployment), spec, self._loop.now)
        self._pods.setdefault(spec.deployment, []).append(pod)
        if not self._bind(pod):
            self._pending.append(pod)
            if self._provision_timer is None:
                self._provision_timer = self._loop.after(self._batch_s, self._provision)
        return pod

    def _bind(self, pod: Pod) -> bool:
        """Place ``pod`` on the fullest node of its pools (in pool order) that has room:
        Ready nodes and, as Karpenter counts in-flight NodeClaims, launching ones."""
        need = pod.spec.gpus
        for pool in self._order:
            if pool.name not in pod.spec.pools:
                continue
            best: Node | None = None
            for node in self._live[pool.name]:
                if (
                    node.state in (LAUNCHING, NODE_READY)
                    and node.free_gpus >= need
                    and (best is None or node.free_gpus < best.free_gpus)
                ):
                    best = node
            if best is not None:
                self._place(pod, best)
                return True
        return False

    def _place(self, pod: Pod, node: Node) -> None:
        """Bind and start: node launch (if still booting), image pull, weight load, engine."""
        now = self._loop.now
        node.free_gpus -= pod.spec.gpus
        node.pods.append(pod)
        node.changed_at = now
        self._version += 1
        pod.node = node
        pod.state = STARTING
        startup = self._pools[node.pool].startup
        rng = self._rng
        start = max(now, node.ready_at)
        image = pod.spec.image or pod.spec.deployment
        pulled = node.images.get(image)
        if pulled is None:
            sampler = startup.image_pull_cached if startup.image_cached else startup.image_pull
            image_done = start + sampler.sample(rng)
            node.images[image] = image_done
        elif pulled > start:
            image_done = pulled  # the pull under way serves this pod too
        else:
            image_done = start + startup.image_pull_cached.sample(rng)
        storage = node.storage or pod.spec.storage
        load = pod.spec.weight_bytes / WEIGHT_LOAD_BYTES_PER_S[storage]
        pod.ready_at = image_done + load + startup.engine_start.sample(rng)
        pod._timer = self._loop.at(pod.ready_at, lambda: self._pod_ready(pod))

    def _pod_ready(self, pod: Pod) -> None:
        pod.state = READY
        pod.ready_at = self._loop.now
        pod._timer = None
        self._listener.pod_ready(pod)

    def _unplace(self, pod: Pod) -> None:
        node = pod.node
        if node is not None and node.state != TERMINATED:
            node.pods.remove(pod)
            node.free_gpus += pod.spec.gpus
            node.changed_at = self._loop.now
            self._version += 1

    def _forget(self, pod: Pod) -> None:
        pod.state = GONE
        if pod._timer is not None:
            pod._timer.cancel()
            pod._timer = None
        self._pods[pod.spec.deployment].remove(pod)

    def _delete_pod(self, pod: Pod, grace_s: float) -> None:
        """Delete a pod: pending and starting ones go at once, ready ones after ``grace_s``."""
        if pod.state == PENDING:
            self._pending.remove(pod)
            self._forget(pod)
        elif pod.state == STARTING:
            self._unplace(pod)
            self._forget(pod)
        elif pod.state == READY:
            pod.state = STOPPING
            self._listener.pod_stopping(pod, grace_s)
            self._loop.after(grace_s, lambda: self._pod_gone(pod))

    def _pod_gone(self, pod: Pod) -> None:
        if pod.state != STOPPING:
            return  # its node went first
        self._unplace(pod)
        self._forget(pod)
        if self._pending:
            self._want_provision()

    # --- nodes --------------------------------------------------------------------------

    def _want_provision(self) -> None:
        if self._provision_timer is None:
            self._provision_timer = self._loop.after(self._batch_s, self._provision)

    def _provision(self) -> None:
        """Karpenter's provisioning pass over the pending pods, in creation order: bind to
        room that exists, else launch in the first pool (by weight) whose offers allow it."""
        self._provision_timer = None
        pending, still = self._pending, []
        blocked: set[tuple[str, str]] = set()
        for i, pod in enumerate(pending):
            if pod.state != PENDING:
                continue
            if self._bind(pod):
                continue
            placed = False
            for pool in self._order:
                if pool.on_prem is not None or pool.name not in pod.spec.pools:
                    continue
                sizes = _batch_sizes(pod, pending[i + 1 :], pool)
                live = self._live[pool.name]
                offer, why = choose_offer(
                    pool,
                    sizes,
                    pool_nodes=len(live),
                    pool_gpus=sum(n.gpus for n in live),
                    quota_used=self._quota_used,
                    quota_limits=self._quotas,
                )
                blocked |= why
                if offer is not None:
                    self._place(pod, self._launch(pool, offer))
                    placed = True
                    break
            if not placed:
                still.append(pod)
        self._pending = still
        for kind, text in sorted(blocked - self._blocked):  # say each blockage once, when new
            self.events.append(ClusterEvent(self._loop.now, kind, text))
        self._blocked = blocked
        if still:
            self._ensure_tick()

    def _launch(self, pool: Pool, offer: Offer) -> Node:
        now = self._loop.now
        node = Node(
            self._name("node"), pool.name, offer, now, now + pool.startup.launch.sample(self._rng)
        )
        self._live[pool.name].append(node)
        self._all.append(node)
        key = (offer.capacity_type, offer.bucket)
        self._quota_used[key] = self._quota_used.get(key, 0) + offer.vcpus
        self.events.append(
            ClusterEvent(
                now, "launch", f"{pool.name}: {node.id} {offer.instance_type} {offer.capacity_type}"
            )
        )
        self._loop.at(node.ready_at, lambda: self._node_ready(node))
        if offer.capacity_type == SPOT:
            self._schedule_interruption(node)
        self._ensure_tick()
        return node

    def _node_ready(self, node: Node) -> None:
        if node.state != LAUNCHING:
            return
        node.state = NODE_READY
        self._version += 1
        self.events.append(ClusterEvent(self._loop.now, "ready", f"{node.pool}: {node.id}"))

    def _schedule_interruption(self, node: Node) -> None:
        """Spot interruptions arrive as a Poisson process at the pool's rate per
        instance-hour."""
        if node._spot_timer is not None:
            node._spot_timer.cancel()
            node._spot_timer = None
        rate = self._spot_rate[node.pool]
        if rate > 0:
            delay = self._rng.expovariate(rate / 3600.0)
            node._spot_timer = self._loop.after(delay, lambda: self._spot_notice(node))

    def _spot_notice(self, node: Node) -> None:
        """EC2's two-minute warning: Karpenter cordons and drains the node and its pods'
        replacements are created at once; the instance is gone at +120 s. Budgets do not
        apply."""
        if node.state not in (LAUNCHING, NODE_READY):
            return
        self.events.append(
            ClusterEvent(
                self._loop.now, "spot_notice", f"{node.pool}: {node.id} {node.instance_type}"
            )
        )
        self._drain(node, SPOT_NOTICE_S, "spot interruption", by_provider=True)

    def _drain(self, node: Node, grace_s: float, reason: str, *, by_provider: bool) -> None:
        """Cordon ``node``, stop its pods with ``grace_s`` and recreate them pending, and
        terminate it after ``grace_s``."""
        node.state = DELETING
        self._version += 1
        for pod in list(node.pods):
            if pod.state == STOPPING:
                continue  # already leaving, with no replacement due
            if pod.state == READY:
                pod.state = STOPPING
                self._listener.pod_stopping(pod, grace_s)
            else:  # starting: killed at once
                self._unplace(pod)
                self._forget(pod)
            self._new_pod(pod.spec)
        self._loop.after(grace_s, lambda: self._terminate(node, reason, by_provider=by_provider))

    def _terminate(self, node: Node, reason: str, *, by_provider: bool = False) -> None:
        if node.state == TERMINATED:
            return
        node.state = TERMINATED
        self._version += 1
        node.terminated_at = self._loop.now
        node.interrupted_by_provider = by_provider
        if node._spot_timer is not None:
            node._spot_timer.cancel()
            node._spot_timer = None
        for pod in node.pods:
            self._forget(pod)
        node.pods = []
        self._live[node.pool].remove(node)
        key = (node.capacity_type, node.bucket)
        self._quota_used[key] -= node.vcpus
        self.events.append(
            ClusterEvent(self._loop.now, "terminated", f"{node.pool}: {node.id} ({reason})")
        )
        if self._pending:
            self._want_provision()

    # --- Karpenter's periodic pass ------------------------------------------------------

    def _ensure_tick(self) -> None:
        if self._tick_timer is None:
            now = self._loop.now
            at = (now // self._interval + 1) * self._interval
            self._tick_timer = self._loop.at(at, self._tick)

    def _tick(self) -> None:
        self._tick_timer = None
        self._disrupt()
        if self._pending:
            self._provision()
        cloud = any(self._live[p.name] for p in self._order if p.on_prem is None)
        if cloud or self._pending:
            self._ensure_tick()

    def _disrupt(self) -> None:
        now = self._loop.now
        now_utc = self._utc_start + timedelta(seconds=now)
        for pool in self._order:
            after = pool.consolidate_after_s
            if pool.on_prem is not None or after is None:
                continue
            self._consolidate_empty(pool, after, now, now_utc)
            if pool.consolidation_policy == "WhenEmptyOrUnderutilized":
                self._consolidate_underutilized(pool, after, now, now_utc)

    def _budget(self, pool: Pool, reason: str, now_utc: datetime) -> int:
        """Allowed disruptions now: initialized nodes (not launching) count, those deleting
        are already disrupting."""
        nodes = self._live[pool.name]
        total = sum(1 for n in nodes if n.state != LAUNCHING)
        disrupting = sum(1 for n in nodes if n.state == DELETING)
        return allowed_disruptions(
            pool.budgets, total_nodes=total, disrupting=disrupting, reason=reason, now_utc=now_utc
        )

    def _consolidate_empty(self, pool: Pool, after: float, now: float, now_utc: datetime) -> None:
        """Delete nodes empty for ``consolidateAfter`` (Karpenter's emptiness), within the
        ``Empty`` budgets; an empty node has nothing to drain and terminates at once."""
        empty = [
            n for n in self._live[pool.name]
            if n.state == NODE_READY and not n.pods and now - n.changed_at >= after
        ]  # fmt: skip
        if not empty:
            return
        allowed = self._budget(pool, "Empty", now_utc)
        empty.sort(key=lambda n: (n.changed_at, n.id))
        for node in empty[:allowed]:
            self.events.append(ClusterEvent(now, "consolidated", f"{pool.name}: {node.id} empty"))
            self._terminate(node, "consolidated: empty")

    def _consolidate_underutilized(
        self, pool: Pool, after: float, now: float, now_utc: datetime
    ) -> None:
        """Delete nodes whose pods all fit on the free GPUs of other Ready nodes (Karpenter's
        single-node consolidation by deletion), least used first, within the
        ``Underutilized`` budgets. Evicted pods get a 30 s grace and are recreated pending."""
        candidates = [
            n for n in self._live[pool.name]
            if n.state == NODE_READY and n.pods and now - n.changed_at >= after
        ]  # fmt: skip
        if not candidates:
            return
        allowed: int | None = None  # the budget, worked out once a node can go
        candidates.sort(key=lambda n: (n.gpus - n.free_gpus, n.changed_at, n.id))
        for node in candidates:
            if node.state != NODE_READY or now - node.changed_at < after:
                continue  # changed earlier in this pass
            if node.no_fit_version == self._version:
                continue  # nothing changed since its pods last did not fit elsewhere
            if any(p.state != READY for p in node.pods):
                continue
            pools = set.intersection(*(set(p.spec.pools) for p in node.pods))
            targets = [
                n for name in pools for n in self._live[name]
                if n is not node and n.state == NODE_READY
            ]  # fmt: skip
            if fit_on([p.spec.gpus for p in node.pods], [t.free_gpus for t in targets]) is None:
                node.no_fit_version = self._version
                continue
            if allowed is None:
                allowed = self._budget(pool, "Underutilized", now_utc)
            if allowed <= 0:
                return
            self.events.append(
                ClusterEvent(now, "consolidated", f"{pool.name}: {node.id} underutilized")
            )
            self._drain(node, TERMINATION_GRACE_S, "consolidated: underutilized", by_provider=False)
            allowed -= 1


def _batch_sizes(pod: Pod, rest: Sequence[Pod], pool: Pool) -> list[int]:
    """GPUs of ``pod`` and the pending pods after it that may use ``pool``, as far as the
    pool's largest type could hold them (Karpenter packs a batch onto one NodeClaim)."""
    largest = max((o.gpus for o in pool.offers), default=0)
    sizes = [pod.spec.gpus]
    total = pod.spec.gpus
    for other in rest:
        if total >= largest:
            break
        if other.state == PENDING and pool.name in other.spec.pools:
            sizes.append(other.spec.gpus)
            total += other.spec.gpus
    return sizes


def _replicaset_rank(now: float) -> Callable[[Pod], tuple[int, int, float, float]]:
    def rank(pod: Pod) -> tuple[int, int, float, float]:
        ready_since = pod.ready_at if pod.state == READY and pod.ready_at is not None else now
        return (pod.state != PENDING, pod.state == READY, -ready_since, -pod.created_at)

    return rank
