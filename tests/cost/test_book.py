"""The cost book's rows and the cumulative cost against hand computations."""

from __future__ import annotations

import pytest

from tiergate.cost import CostBook, NodeUsage, TokenPrices
from tiergate.cost.series import cost_at, cumulative, cumulative_events

SONNET_4 = TokenPrices.per_million(
    3, 15, 0.30, 3.75, price_date="2025-05", source="Amazon Bedrock pricing"
)
HOUR = 3600.0


def gpu_node(
    tier: str,
    capacity: str,
    launched: float,
    terminated: float | None,
    usd_per_hour: float,
    *,
    gpus: int = 1,
    interrupted: bool = False,
) -> NodeUsage:
    return NodeUsage(
        "pool",
        "g6e.xlarge",
        capacity,  # type: ignore[arg-type]
        gpus,
        usd_per_hour,
        launched,
        terminated,
        interrupted,
        tier,
    )


def test_managed_tokens_at_input_output_and_cached_prices() -> None:
    # Claude Sonnet 4 on Bedrock, $3 / $15 per M: 1,000 in + 500 out
    # = 1,000 * 3e-6 + 500 * 15e-6 = 0.003 + 0.0075 = 0.0105 $.
    assert SONNET_4.cost(1000, 500) == pytest.approx(0.0105)
    # 400 of the 1,000 input tokens read from the cache at $0.30/M:
    # 600 * 3e-6 + 400 * 0.3e-6 + 500 * 15e-6 = 0.0018 + 0.00012 + 0.0075 = 0.00942 $.
    assert SONNET_4.cost(1000, 500, cached_tokens=400) == pytest.approx(0.00942)
    assert SONNET_4.label == "$3/$15 per M (Amazon Bedrock pricing, 2025-05)"
    # Without cache prices, cached input costs the input price.
    assert TokenPrices.per_million(0.15, 0.60).cost(1000, 0, 1000) == pytest.approx(0.00015)


def test_rows_per_tier_and_capacity_type_with_utilization_and_price_per_million() -> None:
    book = CostBook(managed={"bedrock": SONNET_4})
    book.add_nodes(
        [
            # cloud spot: two 1-GPU nodes at 2 $/h for 2 h each: 4 GPU-h billed, 8 $.
            gpu_node("cloud", "spot", 0.0, 2 * HOUR, 2.0),
            gpu_node("cloud", "spot", HOUR, 3 * HOUR, 2.0),
            # cloud on-demand: one 4-GPU node at 10 $/h, still running at the end (4 h): 16
            # GPU-h, 40 $.
            gpu_node("cloud", "on-demand", 0.0, None, 10.0, gpus=4),
            # a spot node EC2 took back after 10 minutes: free, 0 GPU-h billed.
            gpu_node("cloud", "spot", 0.0, 600.0, 2.0, interrupted=True),
        ]
    )
    book.add_busy("cloud", 1.0 * HOUR, capacity_type="spot")  # 1 GPU-h busy on spot
    book.add_busy("cloud", 4.0 * HOUR, capacity_type="on-demand")  # 4 GPU-h busy on demand
    book.add_tokens("cloud", 600_000, 200_000, capacity_type="spot")
    book.add_tokens("cloud", 1_000_000, 1_000_000)  # not split by capacity type
    book.add_tokens("bedrock", 1000, 500)
    book.add_tokens("bedrock", 2000, 1000, cached_tokens=1000)

    spot, on_demand, bedrock = book.rows(end=4 * HOUR)
    assert (spot.tier, spot.capacity_type, spot.nodes) == ("cloud", "spot", 3)
    assert spot.gpu_hours_billed == 4.0
    assert spot.cost_usd == pytest.approx(8.0)
    assert spot.utilization == 0.25  # 1 busy / 4 billed
    # 8 $ over 800,000 tokens = 10 $ per million.
    assert spot.usd_per_million_tokens == pytest.approx(10.0)

    assert (on_demand.capacity_type, on_demand.gpu_hours_billed) == ("on-demand", 16.0)
    assert on_demand.cost_usd == pytest.approx(40.0)
    assert on_demand.utilization == 0.25  # 4 / 16
    assert on_demand.usd_per_million_tokens is None  # its tokens were not told apart

    # Bedrock: 0.0105 $ + (1,000 * 3e-6 + 1,000 * 0.3e-6 + 1,000 * 15e-6 = 0.0183 $) = 0.0288 $
    # over 4,500 tokens = 6.4 $ per million; no GPU-hours, no utilization.
    assert (bedrock.capacity_type, bedrock.gpu_hours_billed) == ("managed", 0.0)
    assert bedrock.cost_usd == pytest.approx(0.0288)
    assert bedrock.utilization is None
    assert bedrock.usd_per_million_tokens == pytest.approx(6.4)

    cloud, bedrock_tier = book.tiers(end=4 * HOUR)
    # cloud: 48 $ over 20 GPU-h billed, 5 busy (25%), 2,800,000 tokens: 17.142857 $ per M.
    assert (cloud.tier, cloud.capacity_type) == ("cloud", "all")
    assert (cloud.gpu_hours_billed, cloud.gpu_hours_busy) == (20.0, 5.0)
    assert cloud.utilization == 0.25
    assert cloud.cost_usd == pytest.approx(48.0)
    assert cloud.usd_per_million_tokens == pytest.approx(48 / 2.8)
    assert bedrock_tier.capacity_type == "managed"

    total = book.total(end=4 * HOUR)
    assert total.cost_usd == pytest.approx(48.0288)
    assert total.tokens == 2_804_500


def test_a_tier_without_tokens_has_no_price_per_million() -> None:
    book = CostBook()
    book.add_nodes([gpu_node("idle", "on-demand", 0.0, HOUR, 3.0)])
    (idle,) = book.tiers(end=HOUR)
    assert idle.cost_usd == pytest.approx(3.0)
    assert idle.usd_per_million_tokens is None
    assert idle.utilization == 0.0


def test_a_managed_tier_has_no_nodes() -> None:
    book = CostBook(managed={"bedrock": SONNET_4})
    with pytest.raises(ValueError, match="managed API tier"):
        book.add_nodes([gpu_node("bedrock", "spot", 0.0, None, 1.0)])


def test_cumulative_cost_at_times_matches_the_bill() -> None:
    nodes = [
        # on-demand, 36 $/h = 0.01 $/s, launched at 100 s, terminated at 1,000 s.
        gpu_node("cloud", "on-demand", 100.0, 1000.0, 36.0),
        # on-prem at 7.2 $/h = 0.002 $/s from 0 s, always on.
        gpu_node("onprem", "on-prem", 0.0, None, 7.2),
        # spot interrupted by EC2 after 300 s: free at every time.
        gpu_node("cloud", "spot", 0.0, 300.0, 36.0, interrupted=True),
    ]
    times = [0.0, 100.0, 130.0, 500.0, 2000.0]
    series = cumulative(nodes, times)
    # cloud: nothing before 100 s; at its launch the 60 s minimum (0.6 $); at 130 s still 60 s;
    # at 500 s 400 s (4 $); from 1,000 s on, 900 s (9 $).
    assert series["cloud"].tolist() == pytest.approx([0.0, 0.6, 0.6, 4.0, 9.0])
    # onprem: 0.002 $ per second of the run.
    assert series["onprem"].tolist() == pytest.approx([0.0, 0.2, 0.26, 1.0, 4.0])
    for t, cloud, onprem in zip(times, series["cloud"], series["onprem"], strict=True):
        assert cost_at(nodes, t) == pytest.approx({"cloud": cloud, "onprem": onprem})
    # The last point is the book's bill.
    book = CostBook()
    book.add_nodes(nodes)
    assert {row.tier: row.cost_usd for row in book.tiers(end=2000.0)} == pytest.approx(
        {"cloud": 9.0, "onprem": 4.0}
    )


def test_cumulative_managed_cost_counts_each_request_from_its_time() -> None:
    # Requests at 5 s, 1 s and 3 s costing 0.5, 0.25 and 1 $: by 0 s nothing, by 1 s 0.25, by
    # 3 s 1.25, by 4 s 1.25, by 10 s 1.75.
    series = cumulative_events([5.0, 1.0, 3.0], [0.5, 0.25, 1.0], [0.0, 1.0, 3.0, 4.0, 10.0])
    assert series.tolist() == pytest.approx([0.0, 0.25, 1.25, 1.25, 1.75])
