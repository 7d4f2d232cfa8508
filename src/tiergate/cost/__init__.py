"""One cost accounting for ``simulate``, ``report`` and the demo.

GPU tiers cost what their nodes are billed for: per second from launch to termination with
EC2's 60-second minimum, booting and idle included, nothing for a Spot node EC2 interrupts in
its first hour (:mod:`tiergate.cost.ec2`); owned GPUs cost their amortized rate every hour,
busy or idle (:mod:`tiergate.cost.onprem`); managed API tiers cost their tokens at dated prices
(:mod:`tiergate.cost.managed`). :class:`CostBook` turns them into rows per tier and capacity
type. Cumulative cost over time is :mod:`tiergate.cost.series` (it needs numpy, the ``sim``
extra, so it is not imported here).
"""

from tiergate.cost.book import ALL, MANAGED, TOTAL, CostBook, CostRow
from tiergate.cost.ec2 import (
    CAPACITY_TYPES,
    MINIMUM_BILLED_S,
    SPOT_FREE_IF_INTERRUPTED_WITHIN_S,
    CapacityType,
    NodeUsage,
    billed_seconds,
    node_cost,
)
from tiergate.cost.managed import TokenPrices
from tiergate.cost.onprem import OnPremCost, elapsed_hours, fixed_gpu_cost

__all__ = [
    "ALL",
    "CAPACITY_TYPES",
    "MANAGED",
    "MINIMUM_BILLED_S",
    "SPOT_FREE_IF_INTERRUPTED_WITHIN_S",
    "TOTAL",
    "CapacityType",
    "CostBook",
    "CostRow",
    "NodeUsage",
    "OnPremCost",
    "TokenPrices",
    "billed_seconds",
    "elapsed_hours",
    "fixed_gpu_cost",
    "node_cost",
]
