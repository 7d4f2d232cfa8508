"""Node billing against EC2's rules and on-prem amortization, computed by hand."""

from __future__ import annotations

import pytest

from tiergate.cost import NodeUsage, OnPremCost, billed_seconds, elapsed_hours, node_cost

P5 = 55.04  # p5.48xlarge on-demand, USD per hour


def node(
    launched: float,
    terminated: float | None,
    capacity: str = "on-demand",
    *,
    interrupted: bool = False,
    usd_per_hour: float = P5,
    gpus: int = 8,
) -> NodeUsage:
    return NodeUsage(
        pool="gpu",
        instance_type="p5.48xlarge",
        capacity_type=capacity,  # type: ignore[arg-type]
        gpus=gpus,
        usd_per_hour=usd_per_hour,
        launched_at=launched,
        terminated_at=terminated,
        interrupted_by_provider=interrupted,
        tier="cloud",
    )


@pytest.mark.parametrize("capacity", ["on-demand", "spot"])
def test_a_node_of_30_seconds_is_billed_the_60_second_minimum(capacity: str) -> None:
    short = node(100.0, 130.0, capacity)
    assert billed_seconds(short, end=1000.0) == 60.0
    # 60 s of 55.04 $/h = 55.04 / 60 = 0.917333... $
    assert node_cost(short, end=1000.0) == pytest.approx(55.04 / 60)


def test_per_second_billing_rounds_a_partial_second_up() -> None:
    # 61.5 s is billed in one-second increments: 62 s; 61 s exactly stays 61 s.
    assert billed_seconds(node(0.0, 61.5), end=1000.0) == 62.0
    assert billed_seconds(node(0.0, 61.0), end=1000.0) == 61.0
    # A float sum that lands a hair above a whole second is not billed a second more.
    assert billed_seconds(node(0.1, 0.1 + 61.0), end=1000.0) == 61.0


def test_a_booting_node_is_billed_from_its_launch_and_a_running_one_up_to_the_end() -> None:
    # Launched at 500 s, still running (booting, loading weights) when the period ends at 2300 s:
    # billed 1,800 s = 0.5 h, 0.5 * 55.04 = 27.52 $.
    running = node(500.0, None)
    assert billed_seconds(running, end=2300.0) == 1800.0
    assert node_cost(running, end=2300.0) == pytest.approx(27.52)
    # Not launched yet at 400 s: nothing; at its launch the minimum is owed at once.
    assert billed_seconds(running, end=400.0) == 0.0
    assert billed_seconds(running, end=500.0) == 60.0
    # A node terminated before the end is billed up to its termination only.
    assert billed_seconds(node(0.0, 7200.0), end=10_000.0) == 7200.0


def test_a_spot_node_ec2_interrupts_in_its_first_hour_costs_nothing() -> None:
    # EC2 took it back after 59 minutes: no charge at all, not even the minimum.
    early = node(0.0, 3540.0, "spot", interrupted=True)
    assert billed_seconds(early, end=10_000.0) == 0.0
    assert node_cost(early, end=10_000.0) == 0.0
    # ... also when read before it ended (the figure agrees with the final bill).
    assert billed_seconds(early, end=1000.0) == 0.0
    # After its first hour, every second is charged, the first hour included: 3,700 s.
    assert billed_seconds(node(0.0, 3700.0, "spot", interrupted=True), end=10_000.0) == 3700.0
    # A Spot node that we terminated (consolidation) in its first hour pays its seconds.
    assert billed_seconds(node(0.0, 1200.0, "spot"), end=10_000.0) == 1200.0
    # The rule is for Spot: an on-demand node flagged interrupted is still billed.
    assert billed_seconds(node(0.0, 1200.0, interrupted=True), end=10_000.0) == 1200.0


def test_on_prem_nodes_cost_every_hour_of_a_week_without_traffic() -> None:
    # A node of 250,000 $ over 4 years: 250,000 / (4 * 8,760) = 7.1347... $/h; 10 kW at
    # 0.12 $/kWh = 1.2 $/h; hosting 0.8 $/h: 9.1347... $ per node-hour.
    owned = OnPremCost(
        250_000, 4, power_kw_per_node=10, usd_per_kwh=0.12, hosting_usd_per_node_hour=0.8
    )
    rate = 250_000 / (4 * 8760) + 10 * 0.12 + 0.8
    assert owned.usd_per_node_hour == pytest.approx(rate)
    # Two nodes through a week with no request at all: 168 h * rate * 2 nodes.
    week = 168 * 3600.0
    nodes = [node(0.0, None, "on-prem", usd_per_hour=owned.usd_per_node_hour) for _ in range(2)]
    assert sum(billed_seconds(n, end=week) for n in nodes) == 2 * week
    assert sum(node_cost(n, end=week) for n in nodes) == pytest.approx(168 * rate * 2)
    # No minimum and no rounding for an owned node: 30.5 s is 30.5 s.
    assert billed_seconds(node(0.0, 30.5, "on-prem"), end=100.0) == 30.5


def test_elapsed_hours_of_a_past_a_current_and_a_future_month() -> None:
    start, end = 0.0, 744 * 3600.0  # a 31-day month
    assert elapsed_hours(start, end, now=end + 86_400) == 744.0
    assert elapsed_hours(start, end, now=7 * 86_400.0) == 168.0
    assert elapsed_hours(start, end, now=-3600.0) == 0.0


@pytest.mark.parametrize(
    "bad",
    [
        {"gpus": -1},
        {"usd_per_hour": -0.5},
        {"terminated": -1.0},
    ],
)
def test_impossible_nodes_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="node"):
        node(
            0.0,
            bad.get("terminated"),
            gpus=int(bad.get("gpus", 8)),
            usd_per_hour=bad.get("usd_per_hour", P5),
        )
    with pytest.raises(ValueError, match="capacity type"):
        node(0.0, None, "reserved")
    with pytest.raises(ValueError, match="lifetime"):
        OnPremCost(1000, 0)
