"""The pure cascade policy, as functions: the decisions the simulator will reuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiergate.gateway.cascade import (
    Attempt,
    Skip,
    Verdict,
    entry_points,
    exhausted,
    first_byte_budget_s,
    is_tier_failure,
    judge_status,
    latency_limit_s,
    skip_reason,
)
from tiergate.spec import FallbackPolicy, load_fleet
from tiergate.spec.comparator import Threshold


def test_entry_points_of_the_seed_3tier_fleet(examples: Path) -> None:
    entries = entry_points(load_fleet(examples / "seed-3tier.yaml", env={}))
    assert entries["onprem-dgx-llm"] == ("onprem-dgx-llm", "cloud-eks-llm", "bedrock-fallback")
    assert entries["cloud-eks-llm"] == ("cloud-eks-llm", "bedrock-fallback")
    # Two tiers serve Qwen/Qwen3-32B: the id enters at the first of them.
    assert entries["Qwen/Qwen3-32B"] == entries["onprem-dgx-llm"]
    assert entries["anthropic.claude-sonnet-4-20250514"] == ("bedrock-fallback",)


def test_judge_status_follows_the_configured_list(examples: Path) -> None:
    policy = load_fleet(examples / "seed-bifrost-config.yaml", env={}).fallback
    assert judge_status(200, policy) is Verdict.SERVE
    assert judge_status(503, policy) is Verdict.FALLBACK
    # The seed's list has no 429: a rate-limited upstream's answer goes to the client.
    assert judge_status(429, policy) is Verdict.SERVE
    for status in (400, 401, 404, 413, 422):
        assert judge_status(status, policy) is Verdict.SERVE
    assert is_tier_failure(501, policy)  # returned, but counts against the tier
    assert not is_tier_failure(404, policy)


def test_skip_reasons_in_order_of_severity() -> None:
    assert skip_reason(healthy=False, breaker_allows=False, saturated=True) is Skip.UNHEALTHY
    assert skip_reason(healthy=True, breaker_allows=False, saturated=True) is Skip.BREAKER_OPEN
    assert skip_reason(healthy=True, breaker_allows=True, saturated=True) is Skip.SATURATED
    assert skip_reason(healthy=True, breaker_allows=True, saturated=False) is None


@pytest.mark.parametrize(
    ("reasons", "status", "code"),
    [
        ([], 503, "no_tier_available"),
        (["timeout", "first_byte_timeout"], 504, "upstream_timeout"),
        (["timeout", "status"], 502, "all_tiers_failed"),
        (["connect_error"], 502, "all_tiers_failed"),
    ],
)
def test_exhausted_answers(reasons: list[str], status: int, code: str) -> None:
    attempts = [Attempt(f"t{i}", reason, None, 0.25) for i, reason in enumerate(reasons)]
    got_status, got_code, message = exhausted(attempts)
    assert (got_status, got_code) == (status, code)
    for attempt in attempts:
        assert f"{attempt.tier}: {attempt.reason} after 250 ms" in message


def test_listed_statuses_fall_back_whatever_their_class() -> None:
    policy = FallbackPolicy(frozenset({401, 403, 404, 422, 503}), None, None)
    for status in (401, 403, 404, 422, 503):
        assert judge_status(status, policy) is Verdict.FALLBACK
        assert is_tier_failure(status, policy)
    for status in (400, 413, 429, 500):
        assert judge_status(status, policy) is Verdict.SERVE


def test_latency_limit_applies_only_while_a_tier_is_left() -> None:
    policy = FallbackPolicy(frozenset(), Threshold(">", 2000), None)
    assert latency_limit_s(policy, tier_left=True) == 2.0
    assert latency_limit_s(policy, tier_left=False) is None
    assert latency_limit_s(FallbackPolicy(frozenset(), None, None), tier_left=True) is None


def test_first_byte_budget_is_the_tiers_own_cut_to_latency_ms_while_a_tier_is_left() -> None:
    policy = FallbackPolicy(frozenset(), Threshold(">", 2000), None)
    assert first_byte_budget_s(policy, 600.0, tier_left=True) == 2.0
    assert first_byte_budget_s(policy, 600.0, tier_left=False) == 600.0  # the last tier waits
    assert first_byte_budget_s(policy, 1.5, tier_left=True) == 1.5  # its own limit is shorter
    no_latency = FallbackPolicy(frozenset(), None, None)
    assert first_byte_budget_s(no_latency, 600.0, tier_left=True) == 600.0
