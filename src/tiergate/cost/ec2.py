"""What a node is billed for: EC2's per-second rules, and on-prem nodes charged for every second.

The rules, with their public sources:

- Linux On-Demand and Spot instances are billed "in one-second increments, with a minimum of 60
  seconds", from launch to termination ("Announcing Amazon EC2 per second billing", 2017-10-02,
  https://aws.amazon.com/about-aws/whats-new/2017/10/announcing-amazon-ec2-per-second-billing/;
  "Pricing is per instance-hour consumed for each instance, from the time that an instance is
  launched until an instance is terminated or stopped",
  https://repost.aws/knowledge-center/ec2-instance-hour-billing). A node that is booting,
  pulling images or loading weights is running, so it is billed. AWS does not say how a
  fraction of a second is rounded; we bill whole seconds and round a fraction up.
- A Spot Instance that Amazon EC2 interrupts: "Interrupted in the first hour: No charge;
  Interrupted in any hour after the first hour: Charged for the seconds used" (Windows and
  Linux, excluding SUSE; "Billing for interrupted Spot Instances", Amazon EC2 User Guide,
  https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/billing-for-interrupted-spot-instances.html).
  A Spot Instance that we stop or terminate is "charged for the seconds used", minimum included.
- An on-prem node is owned: it costs its amortized hourly rate for every second of the period,
  busy or idle, with no minimum and no rounding (:class:`tiergate.cost.onprem.OnPremCost`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

CapacityType = Literal["spot", "on-demand", "on-prem"]
CAPACITY_TYPES: tuple[CapacityType, ...] = ("spot", "on-demand", "on-prem")

MINIMUM_BILLED_S = 60.0  # EC2 Linux On-Demand and Spot: 60-second minimum per launch
SPOT_FREE_IF_INTERRUPTED_WITHIN_S = 3600.0  # EC2 interrupts a Spot Instance in its first hour
# Virtual times are sums of floats: 61.0 may arrive as 61.00000000001, which is not a 62nd second.
SECOND_SLACK = 1e-6


@dataclass(frozen=True, slots=True)
class NodeUsage:
    """One node's life, in the caller's clock (virtual seconds in the simulator).

    ``terminated_at`` is ``None`` for a node still running. ``interrupted_by_provider`` is a
    Spot interruption by EC2 (not a consolidation or scale-down of ours); ``tier`` is the tier
    whose replicas the node hosts (a node of several tiers is recorded once per tier, with its
    share of GPUs).
    """

    pool: str
    instance_type: str
    capacity_type: CapacityType
    gpus: int
    usd_per_hour: float
    launched_at: float
    terminated_at: float | None
    interrupted_by_provider: bool = False
    tier: str = ""

    def __post_init__(self) -> None:
        if self.capacity_type not in CAPACITY_TYPES:
            raise ValueError(f"capacity type is one of {CAPACITY_TYPES}, got {self}")
        if self.gpus < 0 or self.usd_per_hour < 0:
            raise ValueError(f"a node needs gpus >= 0 and usd_per_hour >= 0, got {self}")
        if self.terminated_at is not None and self.terminated_at < self.launched_at:
            raise ValueError(f"a node cannot end before its launch, got {self}")

    @property
    def refunded(self) -> bool:
        """EC2 interrupted this Spot node within its first hour: it costs nothing."""
        return (
            self.interrupted_by_provider
            and self.capacity_type == "spot"
            and self.terminated_at is not None
            and self.terminated_at - self.launched_at < SPOT_FREE_IF_INTERRUPTED_WITHIN_S
        )


def billed_seconds(node: NodeUsage, end: float) -> float:
    """The seconds ``node`` is billed for up to ``end`` (its termination, if earlier).

    On-Demand and Spot: whole seconds from launch, at least 60 from the launch on (the minimum
    is owed at once, so a cumulative cost steps up at each launch); a Spot node EC2
    interrupted in its first hour: 0 (judged on its whole life, so the figure at any ``end``
    agrees with the final bill). On-prem: the exact seconds. A node not launched by ``end``: 0.
    """
    stop = end if node.terminated_at is None or node.terminated_at > end else node.terminated_at
    if stop < node.launched_at:
        return 0.0  # not launched yet; from its launch on, its minimum is owed
    ran = stop - node.launched_at
    if node.capacity_type == "on-prem":
        return ran
    if node.refunded:
        return 0.0
    return max(MINIMUM_BILLED_S, float(math.ceil(ran - SECOND_SLACK)))


def node_cost(node: NodeUsage, end: float) -> float:
    """USD ``node`` is billed for up to ``end``."""
    return billed_seconds(node, end) * node.usd_per_hour / 3600
