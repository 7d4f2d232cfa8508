"""What owned GPUs cost: the same every hour, busy or idle.

An owned node is paid for whether it serves or not, so its cost is a rate per hour of the
period: the purchase price spread over its lifetime, plus the power it draws and its hosting
(rack, cooling, network, support). The simulator bills on-prem nodes at this rate for every
second of the run; ``tiergate report`` charges a fixed pool's GPU-hour price for the hours of
the month that have passed.
"""

from __future__ import annotations

from dataclasses import dataclass

HOURS_PER_YEAR = 8760.0  # 365 * 24: amortization by calendar year, leap days ignored


@dataclass(frozen=True, slots=True)
class OnPremCost:
    """The cost of owning one node: ``purchase_usd_per_node`` over ``lifetime_years``, plus
    ``power_kw_per_node`` at ``usd_per_kwh`` and ``hosting_usd_per_node_hour``."""

    purchase_usd_per_node: float
    lifetime_years: float
    power_kw_per_node: float = 0.0
    usd_per_kwh: float = 0.0
    hosting_usd_per_node_hour: float = 0.0

    def __post_init__(self) -> None:
        if self.lifetime_years <= 0:
            raise ValueError(f"an on-prem node needs a lifetime > 0 years, got {self}")
        if any(
            value < 0
            for value in (
                self.purchase_usd_per_node,
                self.power_kw_per_node,
                self.usd_per_kwh,
                self.hosting_usd_per_node_hour,
            )
        ):
            raise ValueError(f"on-prem costs cannot be negative, got {self}")

    @property
    def usd_per_node_hour(self) -> float:
        """purchase / (lifetime * 8,760 h) + power * price of a kWh + hosting."""
        amortized = self.purchase_usd_per_node / (self.lifetime_years * HOURS_PER_YEAR)
        return (
            amortized + self.power_kw_per_node * self.usd_per_kwh + self.hosting_usd_per_node_hour
        )


def elapsed_hours(start: float, end: float, now: float) -> float:
    """The hours of ``[start, end)`` that have passed at ``now`` (Unix or virtual seconds): all
    of a past period, the current one up to ``now``, none of a future one."""
    return max(0.0, min(end, now) - start) / 3600


def fixed_gpu_cost(usd_per_gpu_hour: float, gpus: int, hours: float) -> float:
    """A pool of ``gpus`` that are always there (owned, or reserved): hours * GPUs * rate."""
    return hours * gpus * usd_per_gpu_hour
