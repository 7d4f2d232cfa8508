"""Values the spec resolves: environment references, thresholds, cascade order and warnings."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiergate.spec import Threshold, load_fleet, parse_fleet, parse_threshold

ONE_TIER = """\
models:
  - name: local
    provider: openai-compatible
    baseUrl: {url}
    model: m
    apiKey: {key}
    costPer1kTokens: 0.5
"""


def test_environment_references_resolve_in_any_string() -> None:
    text = ONE_TIER.format(url="http://${HOST}:${PORT:-8000}/v1", key="${API_KEY}")
    fleet = parse_fleet(text, "f.yaml", env={"HOST": "vllm.local", "API_KEY": "sk-1"})
    (tier,) = fleet.cascade
    assert tier.base_url == "http://vllm.local:8000/v1"
    assert tier.api_key == "sk-1"
    assert "sk-1" not in repr(tier)


def test_escaped_reference_is_kept_literally() -> None:
    text = ONE_TIER.format(url="http://vllm:8000/v1", key="'$${NOT_A_VAR}'")
    (tier,) = parse_fleet(text, "f.yaml", env={}).cascade
    assert tier.api_key == "${NOT_A_VAR}"


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("> 30000", Threshold(">", 30000.0)),
        (">=0.25", Threshold(">=", 0.25)),
        ("  >  1e3 ", Threshold(">", 1000.0)),
        (5000, Threshold(">", 5000.0)),
        (0.5, Threshold(">", 0.5)),
    ],
)
def test_threshold_expressions_parse(expression: object, expected: Threshold) -> None:
    assert parse_threshold(expression) == expected


@pytest.mark.parametrize("expression", ["< 5", "30000 >", "> -1", ">", "", True, None, "> abc"])
def test_threshold_rejects_what_it_cannot_read(expression: object) -> None:
    with pytest.raises(ValueError, match="expected a comparator expression"):
        parse_threshold(expression)


def test_threshold_boundaries() -> None:
    assert not Threshold(">", 10).exceeded_by(10)
    assert Threshold(">=", 10).exceeded_by(10)
    assert str(Threshold(">", 30000.0)) == "> 30000"
    assert str(Threshold(">=", 0.1)) == ">= 0.1"


def test_without_cascade_order_tiers_follow_priority() -> None:
    text = """\
models:
  - {name: b, provider: bedrock, model: x, priority: 2, costPer1kTokens: 1}
  - {name: a, provider: openai-compatible, baseUrl: "http://a/v1", model: y, priority: 1,
     costPer1kTokens: 1}
  - {name: c, provider: openai-compatible, baseUrl: "http://c/v1", model: z, costPer1kTokens: 1}
"""
    fleet = parse_fleet(text, "f.yaml", env={})
    assert [t.name for t in fleet.cascade] == ["a", "b", "c"]
    assert fleet.default_model == "a"


def test_models_outside_the_cascade_are_standalone_with_a_warning() -> None:
    text = """\
routing:
  cascadeOrder: [b, a]
models:
  - {name: a, provider: openai-compatible, baseUrl: "http://a/v1", model: y, priority: 1,
     costPer1kTokens: 1}
  - {name: b, provider: bedrock, model: x, priority: 2, costPer1kTokens: 1}
  - {name: c, provider: bedrock, model: z, costPer1kTokens: 1}
"""
    fleet = parse_fleet(text, "f.yaml", env={})
    assert [t.name for t in fleet.cascade] == ["b", "a"]
    assert [t.name for t in fleet.standalone] == ["c"]
    assert [t.name for t in fleet.tiers] == ["b", "a", "c"]
    messages = [w.message for w in fleet.warnings]
    assert messages == [
        "cascadeOrder (b, a) disagrees with priority order (a, b); cascadeOrder wins",
        "'c' is not in routing.cascadeOrder: requests naming it are served by this tier alone, "
        "with no fallback",
    ]


def test_health_check_absolute_url_and_defaults() -> None:
    text = """\
models:
  - name: a
    provider: openai-compatible
    baseUrl: http://a:8000/v1
    model: y
    costPer1kTokens: 1
    healthCheck:
      endpoint: http://probe:9000/ready
"""
    (tier,) = parse_fleet(text, "f.yaml", env={}).cascade
    assert tier.health is not None
    assert tier.health.url == "http://probe:9000/ready"
    assert (tier.health.interval_s, tier.health.timeout_s) == (10.0, 2.0)
    assert (tier.health.unhealthy_threshold, tier.health.healthy_threshold) == (3, 2)


def test_yaml_anchors_and_merge_keys_work() -> None:
    text = """\
models:
  - &engine
    name: base
    provider: openai-compatible
    baseUrl: http://base/v1
    model: Qwen/Qwen3-32B
    costPer1kTokens: 0.001
  - <<: *engine
    name: copy
    baseUrl: http://copy/v1
"""
    fleet = parse_fleet(text, "f.yaml", env={})
    assert [(t.name, t.model, t.base_url) for t in fleet.cascade] == [
        ("base", "Qwen/Qwen3-32B", "http://base/v1"),
        ("copy", "Qwen/Qwen3-32B", "http://copy/v1"),
    ]


def test_bedrock_tier_fields_that_cannot_work_are_reported() -> None:
    text = """\
models:
  - name: claude
    provider: bedrock
    model: us.anthropic.claude-sonnet-4-20250514
    region: us-east-1
    baseUrl: https://vpce-0abc.bedrock-runtime.us-east-1.vpce.amazonaws.com
    apiKey: sk-unused
    costPer1kTokens: 0.003
    healthCheck:
      endpoint: /health
"""
    fleet = parse_fleet(text, "f.yaml", env={})
    (tier,) = fleet.cascade
    # The private endpoint is kept; no probe is built for it (Bedrock has no health endpoint).
    assert tier.base_url == "https://vpce-0abc.bedrock-runtime.us-east-1.vpce.amazonaws.com"
    assert tier.health is None
    assert [(w.line, w.path) for w in fleet.warnings] == [
        (4, "models[0].model"),
        (7, "models[0].apiKey"),
        (10, "models[0].healthCheck"),
    ]
    assert "Did you mean 'us.anthropic.claude-sonnet-4-20250514-v1:0'?" in (
        fleet.warnings[0].message
    )
    assert "signed (SigV4)" in fleet.warnings[1].message


def test_versioned_bedrock_model_ids_and_arns_get_no_warning() -> None:
    for model in (
        "anthropic.claude-sonnet-4-20250514-v1:0",
        "us.anthropic.claude-sonnet-4-20250514-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-7-sonnet-20250219-v1:0",
        "qwen.qwen3-32b-v1:0",
    ):
        text = (
            f"models:\n  - {{name: c, provider: bedrock, model: '{model}', costPer1kTokens: 1}}\n"
        )
        assert parse_fleet(text, "f.yaml", env={}).warnings == ()


def test_the_governed_example_fleet_resolves(examples: Path) -> None:
    fleet = load_fleet(examples / "governed-fleet.yaml", env={"TIERGATE_MASTER_KEY": "k" * 20})
    onprem, bedrock = fleet.cascade
    assert onprem.gpu_pool == (2.5, 8)
    assert bedrock.price.input == pytest.approx(3.0e-6)
    assert bedrock.price.output == pytest.approx(15.0e-6)
    assert bedrock.price.cached_input == pytest.approx(0.3e-6)
    governance = fleet.governance
    assert governance is not None
    assert [b.team or b.project for b in governance.budgets] == ["search", "agents"]
    assert governance.budgets[1].days == 7
    assert governance.rate_limits[0].rpm == 600
    assert fleet.tracing is not None
    assert fleet.tracing.otlp_endpoint == "http://otel-collector:4318/v1/traces"
