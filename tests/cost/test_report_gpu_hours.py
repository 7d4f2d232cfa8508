"""``tiergate report`` charges GPU-hour tiers the hours that have passed, and prices no
elastic tier it has no node-hours for."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from tests.ledger.samples import request
from tiergate.cli.main import cli
from tiergate.ledger.report import (
    ELASTIC_NOTE,
    GpuCost,
    GroupBy,
    build_report,
    parse_month,
    report_csv,
    report_json,
)
from tiergate.ledger.sqlite import SQLiteStore
from tiergate.spec.governance import Pricing

DECEMBER = parse_month("2026-12")  # 31 days: 744 hours
DAY = 86_400.0
# Two requests on December 2nd: onprem 3,000 + 1,000 tokens, cloud 500 + 100.
LEDGER = [
    request(0, at=DECEMBER.start + DAY, tier="onprem", input_tokens=3000, output_tokens=1000),
    request(1, at=DECEMBER.start + DAY, tier="cloud", input_tokens=500, output_tokens=100),
]
GPUS = {
    "onprem": GpuCost(2.5, 8),
    "cloud": GpuCost(0.0, 0, elastic=True),
    "spare": GpuCost(0.0, 0, elastic=True),
}


def test_a_month_that_has_run_7_days_charges_168_hours_not_744() -> None:
    report = build_report(LEDGER, DECEMBER, GroupBy.TIER, GPUS, now=DECEMBER.start + 7 * DAY)
    cloud, onprem, spare = report.gpu_tiers
    # 7 days = 168 h; 2.5 $/GPU-h * 8 GPUs * 168 h = 3,360 $ over 4,000 tokens = 840 $ per 1k.
    assert onprem.hours == 168.0
    assert onprem.fixed_usd == 3360.0
    assert onprem.usd_per_1k_tokens == 840.0
    # Elastic tiers: no node-hours in the ledger, so no cost and no price per token, but the
    # requests and tokens it served.
    assert (cloud.hours, cloud.fixed_usd, cloud.usd_per_1k_tokens) == (None, None, None)
    assert (cloud.requests, cloud.tokens, cloud.note) == (1, 600, ELASTIC_NOTE)
    assert (spare.requests, spare.tokens, spare.fixed_usd) == (0, 0, None)


def test_a_past_month_is_charged_whole_and_a_future_month_not_at_all() -> None:
    past = build_report(LEDGER, DECEMBER, GroupBy.TIER, GPUS, now=DECEMBER.end + DAY)
    assert past.gpu_tiers[1].hours == 744.0  # 31 * 24
    assert past.gpu_tiers[1].fixed_usd == 2.5 * 8 * 744
    future = build_report([], DECEMBER, GroupBy.TIER, GPUS, now=DECEMBER.start - DAY)
    assert (future.gpu_tiers[1].hours, future.gpu_tiers[1].fixed_usd) == (0.0, 0.0)


def test_json_and_csv_show_the_hours_charged_and_the_elastic_note() -> None:
    report = build_report(LEDGER, DECEMBER, GroupBy.TIER, GPUS, now=DECEMBER.start + 7 * DAY)
    cloud, onprem, _ = report_json(report)["gpuTiers"]
    assert (onprem["gpuPool"], onprem["hours"], onprem["fixedCostUsd"]) == ("fixed", 168.0, 3360.0)
    assert cloud == {
        "tier": "cloud",
        "gpuPool": "elastic",
        "gpuHourUsd": None,
        "gpus": None,
        "hours": None,
        "fixedCostUsd": None,
        "requests": 1,
        "tokens": 600,
        "usdPer1kTokens": None,
        "note": ELASTIC_NOTE,
    }
    lines = report_csv(report).splitlines()
    assert lines[0].endswith("gpu_hours_charged,gpu_fixed_usd,usd_per_1k_tokens,gpu_note")
    by_tier = {line.split(",")[0]: line for line in lines[1:]}
    assert by_tier["onprem"].endswith(",168.0,3360.0,840.0,")
    assert by_tier["cloud"].endswith(f",,,,{ELASTIC_NOTE}")


def test_the_spec_says_which_gpu_pools_are_elastic() -> None:
    assert Pricing.model_validate({"gpuHourUsd": 2.5, "gpus": 8}).gpu_pool == "fixed"
    elastic = Pricing.model_validate({"gpuPool": "elastic", "input": 0.1, "output": 0.2})
    assert elastic.gpu_pool == "elastic"
    assert Pricing.model_validate({"gpuPool": "elastic"}).gpu_pool == "elastic"
    with pytest.raises(ValidationError, match="no fixed GPU count"):
        Pricing.model_validate({"gpuPool": "elastic", "gpuHourUsd": 4.0, "gpus": 1})
    with pytest.raises(ValidationError, match="gpuPool"):
        Pricing.model_validate({"gpuPool": "sometimes"})


FLEET = """\
routing:
  cascadeOrder: [onprem, cloud, bedrock]
models:
  - name: onprem
    provider: openai-compatible
    baseUrl: http://vllm:8000/v1
    model: Qwen/Qwen3-32B
    pricing: {gpuHourUsd: 2.5, gpus: 8}
  - name: cloud
    provider: openai-compatible
    baseUrl: http://vllm-cloud:8000/v1
    model: Qwen/Qwen3-32B
    pricing: {gpuPool: elastic}
  - name: bedrock
    provider: bedrock
    model: anthropic.claude-sonnet-4-20250514
    region: us-east-1
    pricing: {input: 3, output: 15}
governance:
  ledger:
    store: sqlite:///ledger.db
"""


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    """A fleet whose ledger holds one request of 2099-01 on the elastic tier."""

    async def fill() -> None:
        store = SQLiteStore(tmp_path / "ledger.db")
        await store.open()
        start = parse_month("2099-01").start
        store.record(request(0, at=start + 60, tier="cloud", input_tokens=700, output_tokens=300))
        await store.close()

    asyncio.run(fill())
    path = tmp_path / "fleet.yaml"
    path.write_text(FLEET)
    return path


def test_the_command_charges_nothing_for_a_month_to_come(fleet: Path) -> None:
    # 2099-01 has not begun: its hours charged are 0, whatever the clock of the test machine.
    result = CliRunner().invoke(
        cli, ["report", "-c", str(fleet), "--month", "2099-01", "--by", "tier", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    cloud, onprem = json.loads(result.stdout)["gpuTiers"]
    assert (onprem["tier"], onprem["hours"], onprem["fixedCostUsd"]) == ("onprem", 0.0, 0.0)
    assert (cloud["tier"], cloud["requests"], cloud["tokens"]) == ("cloud", 1, 1000)
    assert (cloud["fixedCostUsd"], cloud["note"]) == (None, ELASTIC_NOTE)


def test_the_table_shows_the_hours_charged_and_why_an_elastic_tier_has_no_cost(
    fleet: Path,
) -> None:
    result = CliRunner().invoke(
        cli, ["report", "-c", str(fleet), "--month", "2099-01"], env={"COLUMNS": "250"}
    )
    assert result.exit_code == 0, result.output
    onprem = next(line for line in result.stdout.splitlines() if line.startswith("│ onprem"))
    assert "0.0 of 744" in onprem
    cloud = next(line for line in result.stdout.splitlines() if line.startswith("│ cloud"))
    assert "elastic" in cloud
    assert ELASTIC_NOTE in cloud
