"""The seed document's two YAML blocks are valid fleet specs and resolve as the seed describes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiergate.errors import SpecError
from tiergate.spec import Threshold, load_fleet


def test_bifrost_config_resolves_to_three_tiers_in_cascade_order(examples: Path) -> None:
    fleet = load_fleet(examples / "seed-bifrost-config.yaml", env={})

    assert fleet.default_model == "self-hosted-qwen3"
    assert [t.name for t in fleet.cascade] == [
        "self-hosted-qwen3",
        "self-hosted-glm5",
        "bedrock-claude-sonnet",
    ]
    assert [(t.provider, t.model) for t in fleet.cascade] == [
        ("openai-compatible", "Qwen/Qwen3-32B"),
        ("openai-compatible", "zai-org/GLM-5-FP8"),
        ("bedrock", "anthropic.claude-sonnet-4-20250514"),
    ]
    assert [t.price_per_1k_tokens for t in fleet.cascade] == [0.001, 0.003, 0.003]
    assert [t.base_url for t in fleet.cascade] == [
        "http://inference-gateway.llm-d:8080/v1",
        "http://glm5-service.agentic-serving:8000/v1",
        None,
    ]
    bedrock = fleet.cascade[2]
    assert (bedrock.region, bedrock.max_tokens) == ("us-east-1", 4096)
    assert all(t.health is None for t in fleet.cascade)
    assert fleet.standalone == ()
    # Valid as a spec; on real Bedrock its model id would be refused, and tiergate says why.
    (warning,) = fleet.warnings
    assert (warning.line, warning.path) == (31, "models[2].model")
    assert "lacks the version suffix" in warning.message
    assert "'anthropic.claude-sonnet-4-20250514-v1:0'" in warning.message


def test_bifrost_config_fallback_conditions_are_typed(examples: Path) -> None:
    policy = load_fleet(examples / "seed-bifrost-config.yaml", env={}).fallback

    assert policy.status_codes == frozenset({500, 502, 503, 504})
    assert policy.latency_ms == Threshold(">", 30000.0)
    assert policy.error_rate == Threshold(">", 0.1)
    assert policy.latency_ms.exceeded_by(30001)
    assert not policy.latency_ms.exceeded_by(30000)
    assert policy.error_rate.exceeded_by(0.11)


def test_three_tier_block_resolves_with_health_check_on_the_engine_origin(examples: Path) -> None:
    fleet = load_fleet(examples / "seed-3tier.yaml", env={})

    assert [t.name for t in fleet.cascade] == [
        "onprem-dgx-llm",
        "cloud-eks-llm",
        "bedrock-fallback",
    ]
    # No defaultModel in this block: the head of the cascade serves requests that name none.
    assert fleet.default_model == "onprem-dgx-llm"
    onprem, cloud, bedrock = fleet.cascade
    assert onprem.health is not None
    # vLLM serves /health at the root, not under /v1: the endpoint resolves against the origin.
    assert onprem.health.url == "http://hybrid-node-vllm.inference:8000/health"
    assert onprem.health.interval_s == 10.0
    assert cloud.health is None
    assert bedrock.health is None
    assert (bedrock.provider, bedrock.region) == ("bedrock", "us-east-1")
    assert [t.price_per_1k_tokens for t in fleet.cascade] == [None, None, None]
    # Without fallbackConditions the defaults apply.
    assert fleet.fallback.status_codes == frozenset({429, 500, 502, 503, 504})
    assert fleet.fallback.latency_ms is None
    # The block gives no prices: each tier gets a warning, not an error; and the Bedrock model
    # id lacks its version suffix.
    assert [w.path for w in fleet.warnings] == [
        "models[0]",
        "models[1]",
        "models[2]",
        "models[2].model",
    ]


def test_examples_are_the_seed_blocks_verbatim_apart_from_indentation(
    examples: Path, test_data: Path
) -> None:
    # The seed as published lost its leading spaces; the examples restore them and nothing else.
    for example, scraped in (
        ("seed-bifrost-config.yaml", "bifrost-config.yaml"),
        ("seed-3tier.yaml", "3tier.yaml"),
    ):
        restored = (examples / example).read_text().splitlines()
        original = (test_data / "seed-as-scraped" / scraped).read_text().splitlines()
        assert [line.strip() for line in restored] == [line.strip() for line in original]


@pytest.mark.parametrize(("scraped", "line"), [("bifrost-config.yaml", 22), ("3tier.yaml", 19)])
def test_seed_blocks_as_scraped_fail_with_the_reason(
    test_data: Path, scraped: str, line: int
) -> None:
    path = test_data / "seed-as-scraped" / scraped
    with pytest.raises(SpecError) as caught:
        load_fleet(path, env={})

    (issue,) = caught.value.issues
    assert (issue.line, issue.column) == (line, 1)
    assert issue.message.startswith("YAML syntax error: while parsing a block mapping")
    assert "lost its indentation" in issue.message
    assert "after 'routing:'" in issue.message
