"""The nodePools and quotas spec sections: defaults and the errors a user would see."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from tiergate.sim.distributions import Distribution
from tiergate.sim.nodes.pools import WEIGHT_LOAD_BYTES_PER_S, resolve_pool
from tiergate.spec.nodepools import NodePool, NodeSections, Quotas


def test_defaults_follow_karpenter_and_the_references() -> None:
    pool = NodePool.model_validate({"name": "gpu", "instanceTypes": ["p5.48xlarge"]})
    assert pool.capacity_types == ("on-demand",)
    assert pool.weight is None
    assert pool.disruption.consolidation_policy == "WhenEmptyOrUnderutilized"
    assert pool.disruption.consolidate_after_s == 0.0
    assert [b.nodes for b in pool.disruption.budgets] == ["10%"]
    # Spot Instance Advisor's "<5%" band over a 730-hour month: 0.05 / 730.
    assert pool.spot_interruptions_per_instance_hour == pytest.approx(6.849e-5, rel=1e-3)
    quotas = Quotas()
    assert (quotas.on_demand_p, quotas.on_demand_g, quotas.spot_p, quotas.spot_g) == (
        384,
        64,
        384,
        64,
    )
    assert Quotas.model_validate({"onDemandG": 192}).on_demand_g == 192


def test_unknown_instance_type_names_the_known_ones() -> None:
    with pytest.raises(ValidationError, match=r"unknown instance type 'p9\.xlarge'.*p5\.48xlarge"):
        NodePool.model_validate({"name": "gpu", "instanceTypes": ["p9.xlarge"]})


def test_spot_without_a_spot_price_names_the_type_and_the_key() -> None:
    spec = {"name": "gpu", "instanceTypes": ["p5en.48xlarge"], "capacityTypes": ["spot"]}
    with pytest.raises(ValidationError, match=r"no spot price for p5en\.48xlarge.*spotUsdPerHour"):
        NodePool.model_validate(spec)
    # With an override the pool is valid and the override is the price.
    spec["prices"] = {"p5en.48xlarge": {"spotUsdPerHour": 20.5}}
    pool = resolve_pool(NodePool.model_validate(spec))
    assert [(o.capacity_type, o.usd_per_hour) for o in pool.offers] == [("spot", 20.5)]


def test_budget_rules_of_karpenter() -> None:
    def disruption(budgets: list[dict[str, object]]) -> dict[str, object]:
        return {"name": "gpu", "instanceTypes": ["p5.48xlarge"], "disruption": {"budgets": budgets}}

    with pytest.raises(ValidationError, match="schedule and duration must be given together"):
        NodePool.model_validate(disruption([{"nodes": "10%", "schedule": "@daily"}]))
    with pytest.raises(ValidationError, match="hours and/or minutes"):
        NodePool.model_validate(disruption([{"schedule": "@daily", "duration": "30s"}]))
    with pytest.raises(ValidationError, match="day of week"):
        NodePool.model_validate(disruption([{"schedule": "0 9 * * 9", "duration": "8h"}]))
    with pytest.raises(ValidationError, match="percentage"):
        NodePool.model_validate(disruption([{"nodes": "120%"}]))
    with pytest.raises(ValidationError, match="at most 50"):
        NodePool.model_validate(disruption([{"nodes": 1}] * 51))
    ok = NodePool.model_validate(disruption([{"schedule": "@daily", "duration": "1h30m"}]))
    assert ok.disruption.budgets[0].duration_s == 5400.0


def test_consolidate_after_durations_and_never() -> None:
    def after(value: str) -> float | None:
        spec = {
            "name": "g",
            "instanceTypes": ["g6e.xlarge"],
            "disruption": {"consolidateAfter": value},
        }
        return NodePool.model_validate(spec).disruption.consolidate_after_s

    assert after("30s") == 30.0
    assert after("5m") == 300.0
    assert after("1h30m") == 5400.0
    assert after("Never") is None
    with pytest.raises(ValidationError, match="30s, 5m"):
        after("soon")


def test_on_prem_pool_and_its_hourly_cost() -> None:
    pool = NodePool.model_validate(
        {
            "name": "dc",
            "onPrem": {
                "nodes": 2,
                "gpu": "h100",
                "gpusPerNode": 8,
                "costs": {
                    "purchaseUsdPerNode": 350400,
                    "powerKwPerNode": 10,
                    "usdPerKwh": 0.1,
                    "hostingUsdPerNodeHour": 1,
                },
            },
        }
    )
    assert pool.on_prem is not None
    assert pool.on_prem.gpu == "H100"
    # 350,400 / (4 years * 8,760 h) = 10 $/h; power 10 kW * 0.1 $/kWh = 1 $/h; hosting 1 $/h.
    assert pool.on_prem.costs.usd_per_node_hour == pytest.approx(12.0)
    with pytest.raises(ValidationError, match="give no instanceTypes"):
        NodePool.model_validate({**pool.model_dump(by_alias=True), "instanceTypes": ["g6e.xlarge"]})


def test_pool_names_are_unique() -> None:
    pools = [{"name": "a", "instanceTypes": ["g6e.xlarge"]}] * 2
    with pytest.raises(ValidationError, match="'a' is defined twice"):
        NodeSections.model_validate({"nodePools": pools})


def test_distributions_fixed_uniform_and_lognormal() -> None:
    pool = NodePool.model_validate(
        {
            "name": "g",
            "instanceTypes": ["g6e.xlarge"],
            "startup": {
                "launchS": 90,
                "imagePullS": {"uniform": [240, 360]},
                "engineStartS": {"lognormal": {"median": 30, "p95": 60}},
            },
        }
    )
    startup = resolve_pool(pool).startup
    rng = random.Random(7)
    assert startup.launch.sample(rng) == 90.0
    pulls = [startup.image_pull.sample(rng) for _ in range(200)]
    assert all(240 <= p <= 360 for p in pulls)
    engine = sorted(startup.engine_start.sample(rng) for _ in range(2000))
    # Median 30 s and p95 60 s, within sampling error of 2,000 draws.
    assert engine[1000] == pytest.approx(30, rel=0.1)
    assert engine[1900] == pytest.approx(60, rel=0.15)
    with pytest.raises(ValidationError, match="0 < median <= p95"):
        NodePool.model_validate(
            {
                "name": "g",
                "instanceTypes": ["g6e.xlarge"],
                "startup": {"launchS": {"lognormal": {"median": 5, "p95": 1}}},
            }
        )
    assert Distribution.fixed(3.0).sample(rng) == 3.0


def test_hub_storage_is_the_seeds_744_gb_in_half_an_hour() -> None:
    # 744 GB / 1,800 s = 0.413 GB/s; NVMe stays the perf model's 3.5 GB/s.
    assert WEIGHT_LOAD_BYTES_PER_S["hub"] == pytest.approx(0.4133e9, rel=1e-3)
    assert WEIGHT_LOAD_BYTES_PER_S["nvme"] == 3.5e9
