"""The Karpenter node model: pools, quotas, launches, start-up phases, spot interruptions,
consolidation and disruption budgets, in virtual time."""

from tiergate.sim.nodes.budgets import BudgetRule, allowed_disruptions, budget_active
from tiergate.sim.nodes.cluster import Cluster
from tiergate.sim.nodes.pools import (
    WEIGHT_LOAD_BYTES_PER_S,
    Offer,
    Pool,
    quota_limits,
    resolve_pool,
    resolve_pools,
)
from tiergate.sim.nodes.state import (
    SPOT_NOTICE_S,
    TERMINATION_GRACE_S,
    ClusterEvent,
    ClusterListener,
    Node,
    NodeRecord,
    Pod,
    PodSpec,
)

__all__ = [
    "SPOT_NOTICE_S",
    "TERMINATION_GRACE_S",
    "WEIGHT_LOAD_BYTES_PER_S",
    "BudgetRule",
    "Cluster",
    "ClusterEvent",
    "ClusterListener",
    "Node",
    "NodeRecord",
    "Offer",
    "Pod",
    "PodSpec",
    "Pool",
    "allowed_disruptions",
    "budget_active",
    "quota_limits",
    "resolve_pool",
    "resolve_pools",
]
