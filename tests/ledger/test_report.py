"""Report figures against a hand computation over a small ledger."""

from __future__ import annotations

import csv
import io

import pytest

from tests.ledger.samples import T0, request
from tiergate.ledger.report import (
    GpuCost,
    GroupBy,
    build_report,
    parse_month,
    report_csv,
    report_json,
)

NOVEMBER = parse_month("2026-11")

# Six requests of November and one of December (left out).
LEDGER = [
    request(
        0,
        team="search",
        tier="onprem",
        input_tokens=1000,
        output_tokens=200,
        cached_tokens=400,
        cost_usd=0.0,
    ),
    request(
        1,
        team="search",
        tier="onprem",
        input_tokens=3000,
        output_tokens=800,
        cost_usd=0.0,
        status=500,
        error="upstream 500",
    ),
    request(
        2,
        team="search",
        tier="bedrock",
        input_tokens=2000,
        output_tokens=500,
        cached_tokens=1000,
        cost_usd=0.75,
        attempts=2,
        fallbacks="onprem:status_503",
    ),
    request(
        3,
        team="ads",
        tier="bedrock",
        input_tokens=500,
        output_tokens=100,
        cost_usd=0.25,
        attempts=3,
        fallbacks="onprem:timeout,cloud:status_429",
    ),
    request(4, team="ads", tier="cloud", input_tokens=4000, output_tokens=1000, cost_usd=0.5),
    request(
        5,
        team=None,
        tier="none",
        input_tokens=0,
        output_tokens=0,
        cost_usd=0.0,
        attempts=3,
        fallbacks="onprem:timeout,cloud:timeout,bedrock:timeout",
        status=503,
        error="no tier answered",
    ),
    request(9, at=NOVEMBER.end, team="search", tier="onprem", input_tokens=10**6),
]
GPUS = {"onprem": GpuCost(2.5, 8), "cloud": GpuCost(4.0, 1)}


def test_month_is_a_utc_calendar_month() -> None:
    assert NOVEMBER.start == T0  # 2026-11-01T00:00:00Z
    assert NOVEMBER.hours == 30 * 24
    december = parse_month("2026-12")
    assert december.end - december.start == 31 * 86400
    assert parse_month("2027-01").start == december.end
    assert parse_month("2028-02").hours == 29 * 24


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "2026-1", "26-11", "november", "1969-12"])
def test_bad_months_are_refused_by_name(text: str) -> None:
    with pytest.raises(ValueError, match=repr(text)):
        parse_month(text)


def test_report_by_team_matches_a_hand_computation() -> None:
    report = build_report(LEDGER, NOVEMBER, GroupBy.TEAM, GPUS)
    assert report.tiers == ("bedrock", "onprem", "cloud", "none")  # most served first
    search, ads, nobody = report.rows  # most cost first
    assert (search.group, ads.group, nobody.group) == ("search", "ads", "(none)")

    assert search.requests == 3
    assert (search.input_tokens, search.output_tokens, search.cached_tokens) == (6000, 1500, 1400)
    assert search.cost_usd == 0.75
    assert search.tier_share("onprem") == 2 / 3
    assert search.tier_share("bedrock") == 1 / 3
    assert search.tier_share("cloud") == 0
    assert search.fallback_share == 1 / 3
    assert search.error_share == 1 / 3

    assert (ads.requests, ads.input_tokens, ads.output_tokens) == (2, 4500, 1100)
    assert ads.cost_usd == 0.75
    assert ads.tier_share("bedrock") == ads.tier_share("cloud") == 0.5
    assert (ads.fallback_share, ads.error_share) == (0.5, 0.0)

    assert (nobody.requests, nobody.tier_share("none")) == (1, 1.0)
    assert (nobody.fallback_share, nobody.error_share) == (1.0, 1.0)

    total = report.total
    assert (total.requests, total.input_tokens, total.output_tokens) == (6, 10500, 2600)
    assert total.cost_usd == 1.5
    assert total.fallback_share == 3 / 6
    assert total.error_share == 2 / 6

    # Effective price of the GPU-hour tiers: 2.5 $/GPU-h * 8 GPUs * 720 h = 14,400 $ over the
    # 5,000 tokens onprem served (1000+200+3000+800) → 2,880 $ per 1k tokens; cloud: 4 * 1 *
    # 720 = 2,880 $ over 5,000 tokens → 576 $ per 1k.
    cloud, onprem = report.gpu_tiers
    assert (onprem.tier, onprem.fixed_usd, onprem.tokens) == ("onprem", 14_400.0, 5000)
    assert onprem.usd_per_1k_tokens == 2880.0
    assert (cloud.tier, cloud.fixed_usd, cloud.tokens) == ("cloud", 2880.0, 5000)
    assert cloud.usd_per_1k_tokens == 576.0


def test_a_gpu_tier_that_served_nothing_has_no_price_per_token() -> None:
    report = build_report(LEDGER, NOVEMBER, GroupBy.TIER, {"idle": GpuCost(1.0, 2)})
    (idle,) = report.gpu_tiers
    assert (idle.fixed_usd, idle.tokens, idle.usd_per_1k_tokens) == (1440.0, 0, None)


@pytest.mark.parametrize(
    ("by", "groups"),
    [
        (GroupBy.TIER, {"onprem": 2, "bedrock": 2, "cloud": 1, "none": 1}),
        (GroupBy.KEY, {"k1": 6}),
        (GroupBy.MODEL, {"qwen3-32b": 6}),
        (GroupBy.STAGE, {"prod": 6}),
        (GroupBy.PROJECT, {"ranker": 6}),
    ],
)
def test_every_grouping(by: GroupBy, groups: dict[str, int]) -> None:
    report = build_report(LEDGER, NOVEMBER, by)
    assert {row.group: row.requests for row in report.rows} == groups


def test_json_and_csv_carry_the_same_figures() -> None:
    report = build_report(LEDGER, NOVEMBER, GroupBy.TEAM, GPUS)
    document = report_json(report)
    assert document["period"] == {
        "month": "2026-11",
        "start": "2026-11-01T00:00:00Z",
        "end": "2026-12-01T00:00:00Z",
        "hours": 720.0,
    }
    search = document["rows"][0]
    assert search == {
        "team": "search",
        "requests": 3,
        "inputTokens": 6000,
        "outputTokens": 1500,
        "cachedTokens": 1400,
        "costUsd": 0.75,
        "tierShare": {"bedrock": 0.3333, "onprem": 0.6667, "cloud": 0.0, "none": 0.0},
        "fallbackShare": 0.3333,
        "errorShare": 0.3333,
    }
    assert document["total"]["requests"] == 6
    assert document["gpuTiers"][1] == {
        "tier": "onprem",
        "gpuPool": "fixed",
        "gpuHourUsd": 2.5,
        "gpus": 8,
        "hours": 720.0,
        "fixedCostUsd": 14400.0,
        "requests": 2,
        "tokens": 5000,
        "usdPer1kTokens": 2880.0,
        "note": None,
    }

    rows = list(csv.DictReader(io.StringIO(report_csv(report))))
    assert [row["team"] for row in rows] == ["search", "ads", "(none)"]
    assert rows[0] == {
        "team": "search",
        "requests": "3",
        "input_tokens": "6000",
        "output_tokens": "1500",
        "cached_tokens": "1400",
        "cost_usd": "0.75",
        "share_bedrock": "0.3333",
        "share_onprem": "0.6667",
        "share_cloud": "0.0",
        "share_none": "0.0",
        "fallback_share": "0.3333",
        "error_share": "0.3333",
    }


def test_csv_by_tier_adds_the_effective_gpu_price() -> None:
    report = build_report(LEDGER, NOVEMBER, GroupBy.TIER, GPUS)
    rows = {row["tier"]: row for row in csv.DictReader(io.StringIO(report_csv(report)))}
    assert rows["onprem"]["usd_per_1k_tokens"] == "2880.0"
    assert rows["onprem"]["gpu_fixed_usd"] == "14400.0"
    assert rows["bedrock"]["usd_per_1k_tokens"] == ""
