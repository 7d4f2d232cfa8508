"""The demo's pieces on their own: prompts of the trace's length, reading the gateway's metrics,
and the figures of the view and the summary."""

from __future__ import annotations

import pytest

from tiergate.demo.metrics import cost, parse_gateway, percentile
from tiergate.demo.prompts import PromptMaker
from tiergate.demo.replay import Outcome
from tiergate.demo.report import summarize
from tiergate.demo.view import TierInfo, tier_state
from tiergate.emulator.openai_format import ChatBody
from tiergate.providers import Usage
from tiergate.sim import TraceRequest
from tiergate.telemetry.metrics import GatewayMetrics


def emulated_prompt_tokens(text: str) -> int:
    body = ChatBody.model_validate({"model": "m", "messages": [{"role": "user", "content": text}]})
    return body.estimated_prompt_tokens()


@pytest.mark.parametrize(
    ("trace_tokens", "expected"), [(5, 5), (110, 110), (4808, 4808), (9000, 6000)]
)
def test_prompts_have_the_trace_length_as_the_emulator_counts_it(
    trace_tokens: int, expected: int
) -> None:
    prompts = PromptMaker(seed=1, max_tokens=6000)
    text = prompts(TraceRequest(0.0, trace_tokens, 10))
    assert emulated_prompt_tokens(text) == expected


def test_prompts_share_the_prefix_blocks_the_trace_says_they_share() -> None:
    prompts = PromptMaker(seed=1, max_tokens=4096)
    first = prompts(TraceRequest(0.0, 1500, 1, (7, 8, 9)))
    second = prompts(TraceRequest(1.0, 1500, 1, (7, 8, 10)))
    shared = 2 * 512 * 4  # two blocks of 512 tokens, 4 characters each
    assert first[:shared] == second[:shared]
    assert first[shared:] != second[shared:]
    # Without prefix ids, prompts differ.
    assert prompts(TraceRequest(0.0, 500, 1)) != prompts(TraceRequest(0.0, 500, 1))


def test_the_gateway_metrics_are_read_by_tier() -> None:
    metrics = GatewayMetrics()
    metrics.request_done("onprem", "onprem", 200, 0.1)
    metrics.request_done("onprem", "cloud", 200, 0.1)
    metrics.request_done("onprem", "cloud", 200, 0.1)
    metrics.request_done("onprem", "none", 502, 0.1)
    metrics.attempt_done("onprem", "status", 0.01)
    metrics.attempt_done("onprem", "ok", 0.01)
    metrics.fallback("onprem", "cloud", "status")
    metrics.fallback("onprem", "cloud", "breaker_open")
    metrics.tokens_used("onprem", "cloud", Usage(1000, 20))
    metrics.tokens_used("onprem", "cloud", Usage(500, 30))
    metrics.breaker_state.labels("onprem").set(1)

    sample = parse_gateway(metrics.exposition().decode(), at=5.0)
    assert sample.served("cloud") == 2
    assert sample.served("onprem") == 1
    assert sample.requests[("none", "502")] == 1
    assert sample.failed_attempts == {"onprem": 1}
    assert sample.fallbacks_from("onprem") == 2
    assert sample.tokens["cloud"] == (1500, 50)
    assert tier_state(sample, "onprem") == "breaker open"
    assert tier_state(sample, "cloud") == "up"


def test_cost_counts_input_and_output_at_the_tier_price() -> None:
    assert cost((1500.0, 500.0), 0.003) == pytest.approx(0.006)
    assert cost((1500.0, 500.0), None) == 0.0


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.95) == 95
    assert percentile([], 0.95) is None


def test_the_summary_prices_the_tiers_against_the_managed_api_alone() -> None:
    tiers = [TierInfo("onprem", "on-prem", 0.0005), TierInfo("api", "managed API", 0.003)]
    metrics = GatewayMetrics()
    metrics.request_done("onprem", "onprem", 200, 0.1)
    metrics.request_done("onprem", "api", 200, 0.1)
    metrics.tokens_used("onprem", "onprem", Usage(9000, 1000))
    metrics.tokens_used("onprem", "api", Usage(1000, 0))
    outcomes = [
        Outcome(0.0, 1.0, "onprem", 200, 0.1, 9000, 1000, None),
        Outcome(0.5, 1.0, "api", 200, 0.3, 1000, 0, None),
    ]
    summary = summarize(
        tiers,
        parse_gateway(metrics.exposition().decode(), at=1.0),
        outcomes,
        [],
        sent=2,
        total=2,
        wall_s=1.0,
        speedup=10,
    )
    assert [t.requests for t in summary.tiers] == [1, 1]
    assert summary.cost_usd == pytest.approx(10_000 * 0.0005 / 1000 + 1000 * 0.003 / 1000)
    assert summary.baseline_cost_usd == pytest.approx(11_000 * 0.003 / 1000)
    # Latencies in trace time: wall seconds times the speed-up.
    assert summary.tiers[0].ttft_p50_s == pytest.approx(1.0)
    assert summary.client_errors == 0
