"""The managed API tier: rolling-minute quotas answering 429, TPM as Bedrock counts it,
latency from its distributions, the dated price table and its source choice."""

from __future__ import annotations

import random

import pytest

from tiergate.providers.base import Usage
from tiergate.sim.distributions import Distribution
from tiergate.sim.managed import (
    ManagedPriceError,
    ManagedSettings,
    ManagedTier,
    managed_price,
    price_sources,
)
from tiergate.spec.governance import Pricing
from tiergate.spec.simulation import ManagedTierSimulation

# First token after 1 s, then 50 tokens/s: 50 output tokens end at 2 s.
STEADY = {"ttft_s": Distribution.fixed(1.0), "output_tokens_per_s": Distribution.fixed(50.0)}


def tier(**settings: object) -> ManagedTier:
    return ManagedTier(ManagedSettings(**{**STEADY, **settings}), random.Random(0))  # type: ignore[arg-type]


def test_the_11th_request_in_a_minute_with_rpm_10_is_throttled() -> None:
    managed = tier(requests_per_minute=10)
    assert [managed.admit(float(t), 100, 50).status for t in range(10)] == [200] * 10
    assert managed.admit(10.0, 100, 50).status == 429
    # The window is rolling: the request of t=0 counts until t=60 and no longer.
    assert managed.admit(59.9, 100, 50).status == 429
    assert managed.admit(60.0, 100, 50).status == 200
    assert managed.admit(60.5, 100, 50).status == 429  # t=1 still counts until t=61
    assert (managed.admitted, managed.throttled) == (11, 3)


def test_a_throttled_request_answers_429_at_once_and_counts_for_nothing() -> None:
    managed = tier(requests_per_minute=1)
    managed.admit(0.0, 100, 50)
    answer = managed.admit(1.0, 100, 50)
    assert (answer.status, answer.ttft_s, answer.duration_s) == (429, 0.05, 0.05)
    assert managed.quota_used(1.0) == (1, 150)  # only the admitted request: 100 + 50


def test_tpm_reserves_input_plus_max_tokens_then_settles_to_what_was_generated() -> None:
    managed = tier(tokens_per_minute=1000)
    # Reserved 300 + 200 = 500 each; 50 tokens generated end at 1 + 50/50 = 2 s.
    assert managed.admit(0.0, 300, 200, output_tokens=50).status == 200
    assert managed.admit(0.5, 300, 200, output_tokens=50).status == 200  # 1000 <= 1000
    assert managed.admit(1.0, 100, 50).status == 429  # 1000 + 150 > 1000
    # At 2 s the first one ends: settled to 300 + 50 = 350, so 850 are counted.
    assert managed.quota_used(2.0) == (2, 850)
    assert managed.admit(2.0, 100, 50).status == 200  # 850 + 150 = 1000
    # At 61 s the first two have left the window, at 62 s the third.
    assert managed.quota_used(61.0) == (1, 150)
    assert managed.quota_used(62.0) == (0, 0)


def test_claude_4_output_tokens_burn_down_five_times() -> None:
    settings = ManagedSettings.for_model(
        "us.anthropic.claude-sonnet-4-20250514-v1:0",
        ttft_s=Distribution.fixed(1.0),
        output_tokens_per_s=Distribution.fixed(50.0),
        tokens_per_minute=10_000,
    )
    assert settings.output_burndown == 5
    managed = ManagedTier(settings, random.Random(0))
    managed.admit(0.0, 1000, 1000, output_tokens=100)  # ends at 1 + 100/50 = 3 s
    assert managed.quota_used(1.0) == (1, 2000)  # reserved: 1000 + 1000
    assert managed.quota_used(3.0) == (1, 1500)  # settled: 1000 + 5 * 100


def test_latency_is_first_token_then_output_at_its_speed() -> None:
    managed = tier(ttft_s=Distribution.fixed(0.5), output_tokens_per_s=Distribution.fixed(100.0))
    answer = managed.admit(0.0, 1000, 400, output_tokens=200)
    assert (answer.status, answer.ttft_s, answer.duration_s) == (200, 0.5, 2.5)  # 0.5 + 200/100


def test_latency_draws_repeat_for_a_seed() -> None:
    settings = ManagedSettings.for_model("qwen.qwen3-32b-v1:0")
    first = ManagedTier(settings, random.Random(4))
    second = ManagedTier(settings, random.Random(4))
    answers = [first.admit(float(t), 500, 100) for t in range(20)]
    assert answers == [second.admit(float(t), 500, 100) for t in range(20)]
    assert len({a.ttft_s for a in answers}) == 20


def test_spec_section_overrides_the_model_defaults() -> None:
    section = ManagedTierSimulation.model_validate(
        {"ttftS": 0.2, "quota": {"requestsPerMinute": 5, "tokensPerMinute": 9000}}
    )
    settings = ManagedSettings.from_spec("qwen.qwen3-32b-v1:0", section)
    assert settings.ttft_s == Distribution.fixed(0.2)
    assert settings.output_tokens_per_s == Distribution.fixed(90.0)  # Qwen3-32B's default
    assert (settings.requests_per_minute, settings.tokens_per_minute) == (5, 9000)


def test_sonnet_4_prices_from_the_table() -> None:
    found = managed_price("anthropic.claude-sonnet-4-20250514")
    # 1M plain input at $3, 1M cache reads at $0.30, 1M output at $15.
    usage = Usage(prompt=2_000_000, completion=1_000_000, cache_read=1_000_000)
    assert found.price.cost(usage) == pytest.approx(3.0 + 0.30 + 15.0)
    assert found.source_key == "bedrock"
    assert found.as_of == "2026-12-08"


@pytest.mark.parametrize("model", ["qwen.qwen3-32b-v1:0", "Qwen/Qwen3-32B", "bedrock/qwen3-32b"])
def test_qwen3_32b_has_two_quoted_prices_and_the_spec_picks_one(model: str) -> None:
    usage = Usage(prompt=1_000_000, completion=1_000_000)
    assert price_sources(model) == ("bedrock", "alternate")
    default = managed_price(model)
    assert default.price.cost(usage) == pytest.approx(0.15 + 0.60)
    chosen = managed_price(model, price_source="alternate")
    assert chosen.price.cost(usage) == pytest.approx(0.50 + 1.50)
    assert chosen.source_key == "alternate"
    assert chosen.source != default.source


def test_the_tiers_own_pricing_wins_over_the_table() -> None:
    pricing = Pricing.model_validate({"per": "1M", "input": 1.0, "output": 2.0})
    found = managed_price("qwen.qwen3-32b-v1:0", price_source="alternate", pricing=pricing)
    assert found.price.cost(Usage(prompt=1_000_000, completion=1_000_000)) == pytest.approx(3.0)
    assert found.source_key == "spec"


def test_unknown_models_and_sources_are_refused_by_name() -> None:
    with pytest.raises(ManagedPriceError, match="no managed price for model 'mystery-1'"):
        managed_price("mystery-1")
    with pytest.raises(ManagedPriceError, match="from source 'list-b': it has bedrock"):
        managed_price("anthropic.claude-sonnet-4-20250514", price_source="list-b")
