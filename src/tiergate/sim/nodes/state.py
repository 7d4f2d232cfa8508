"""The cluster's objects: pod specs, pods and nodes (small mutable slots classes, one per pod
or node, changed only by :class:`~tiergate.sim.nodes.cluster.Cluster`), and the values it
reports: events and billing records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

from tiergate.sim.loop import Timer
from tiergate.sim.nodes.pools import Offer

SPOT_NOTICE_S = 120.0  # EC2's two-minute Spot interruption warning
TERMINATION_GRACE_S = 30.0  # Kubernetes' default terminationGracePeriodSeconds
DISRUPTION_INTERVAL_S = 10.0  # Karpenter's disruption controller polling period
BATCH_S = 1.0  # Karpenter's batchIdleDuration: pending pods gathered before a launch

# Pod states.
PENDING, STARTING, READY, STOPPING, GONE = "pending", "starting", "ready", "stopping", "gone"
# Node states.
LAUNCHING, NODE_READY, DELETING, TERMINATED = "launching", "ready", "deleting", "terminated"


@dataclass(frozen=True, slots=True)
class PodSpec:
    """One replica of a deployment: its GPUs, its weights and where they load from (``nvme``,
    ``s3``, ``fsx``, ``efs``, ``hub``), the pools it may use (its nodeSelector), and its
    container image (deployments sharing one, such as a vLLM release, share a node's cache;
    default: one image per deployment)."""

    deployment: str
    gpus: int
    weight_bytes: float
    storage: str
    pools: tuple[str, ...]
    image: str | None = None


class Pod:
    """One pod; ``ready_at`` is its (expected, then actual) ready time, once it is placed."""

    __slots__ = ("_timer", "created_at", "id", "node", "ready_at", "spec", "state")

    def __init__(self, pod_id: str, spec: PodSpec, created_at: float) -> None:
        self.id = pod_id
        self.spec = spec
        self.created_at = created_at
        self.state = PENDING
        self.node: Node | None = None
        self.ready_at: float | None = None
        self._timer: Timer | None = None

    def __repr__(self) -> str:
        return f"Pod({self.id}, {self.state})"


class Node:
    """One node, cloud or on-prem."""

    __slots__ = (
        "_spot_timer",
        "bucket",
        "capacity_type",
        "changed_at",
        "free_gpus",
        "gpus",
        "id",
        "images",
        "instance_type",
        "interrupted_by_provider",
        "launched_at",
        "no_fit_version",
        "pods",
        "pool",
        "ready_at",
        "state",
        "storage",
        "terminated_at",
        "usd_per_hour",
        "vcpus",
    )

    def __init__(
        self,
        node_id: str,
        pool: str,
        offer: Offer,
        launched_at: float,
        ready_at: float,
        *,
        storage: str | None = None,
    ) -> None:
        self.id = node_id
        self.pool = pool
        self.instance_type = offer.instance_type
        self.capacity_type = offer.capacity_type
        self.gpus = offer.gpus
        self.vcpus = offer.vcpus
        self.bucket = offer.bucket
        self.usd_per_hour = offer.usd_per_hour
        self.launched_at = launched_at
        self.ready_at = ready_at
        self.terminated_at: float | None = None
        self.state = LAUNCHING
        self.pods: list[Pod] = []
        self.free_gpus = offer.gpus
        self.images: dict[str, float] = {}  # image → time it is on the node
        self.changed_at = ready_at  # last pod scheduled or removed (consolidateAfter's timer)
        self.interrupted_by_provider = False
        self.no_fit_version = -1  # cluster version at which its pods fitted nowhere else
        self.storage = storage  # on-prem: where weights load from, whatever the pod says
        self._spot_timer: Timer | None = None

    def __repr__(self) -> str:
        return f"Node({self.id}, {self.instance_type}, {self.state}, {self.free_gpus} free)"


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """A node as the cost accounting bills it (``terminated_at`` is ``None`` while running)."""

    pool: str
    instance_type: str
    capacity_type: str  # "spot" | "on-demand" | "on-prem"
    gpus: int
    usd_per_hour: float
    launched_at: float
    terminated_at: float | None
    interrupted_by_provider: bool


class ClusterEvent(NamedTuple):
    """``kind``: launch, ready, terminated, quota_blocked, limit_reached, spot_notice,
    consolidated."""

    t: float
    kind: str
    text: str


class ClusterListener(Protocol):
    """What the engines hear. Only pods that were ready hear ``pod_stopping``: a pod deleted
    while pending or starting never served."""

    def pod_ready(self, pod: Pod) -> None:
        """The pod's engine serves from now."""

    def pod_stopping(self, pod: Pod, grace_s: float) -> None:
        """Take the pod out of rotation now; it is gone after ``grace_s``."""
