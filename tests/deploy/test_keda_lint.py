"""The seed's KEDA ScaledObject through `tiergate check`: every trap named where it is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tiergate.cli.main import cli
from tiergate.deploy.keda_lint import lint_scaled_object
from tiergate.spec.yamldoc import parse_yaml

PER_REPLICA = (
    "the query is already a per-replica figure ({}), but with metricType AverageValue (the "
    "default) the HPA divides it by the replica count again"
)


def lint(text: str) -> tuple[list[str], list[str]]:
    result = lint_scaled_object(parse_yaml(text, "so.yaml", {}))
    return [str(i) for i in result.errors], [str(i) for i in result.warnings]


def test_the_seed_scaled_object_and_why_it_would_not_scale(examples: Path) -> None:
    result = CliRunner().invoke(
        cli, ["check", "--format", "json", str(examples / "seed-keda-scaledobject.yaml")]
    )
    assert result.exit_code == 2
    (document,) = json.loads(result.stdout)["fleets"]
    assert document["kind"] == "ScaledObject"
    found = [(e["line"], e["path"], e["message"].split(":")[0]) for e in document["errors"]]
    assert found == [
        (12, "spec.triggers[0]", PER_REPLICA.format("avg")),
        (14, "spec.triggers[0].metadata", "missing 'serverAddress'"),
        (14, "spec.triggers[0].metadata.query", "vllm_gpu_cache_usage_perc matches no series"),
        (15, "spec.triggers[0].metadata.threshold", "threshold 80 on vllm"),
        (19, "spec.triggers[1].metadata", "missing 'serverAddress'"),
        (19, "spec.triggers[1].metadata.query", "vllm_num_requests_waiting matches no series"),
        (22, "spec.triggers[2]", PER_REPLICA.format("histogram_quantile")),
        (24, "spec.triggers[2].metadata", "missing 'serverAddress'"),
        (
            24,
            "spec.triggers[2].metadata.query",
            "vllm_time_to_first_token_seconds_bucket matches no series",
        ),
        (
            24,
            "spec.triggers[2].metadata.query",
            "histogram_quantile over per-pod buckets without 'sum by (le)' returns one series "
            "per pod and engine",
        ),
    ]
    messages = " ".join(e["message"] for e in document["errors"])
    assert "Write vllm:kv_cache_usage_perc" in messages  # renamed in vLLM, not just recoloned
    assert "for 80% write 0.8" in messages
    (warning,) = document["warnings"]
    assert "NaN, which KEDA reads as 0" in warning["message"]


def test_the_corrected_scaled_object_is_valid(examples: Path) -> None:
    result = CliRunner().invoke(cli, ["check", str(examples / "keda-scaledobject.yaml")])
    assert result.exit_code == 0, result.output
    assert "valid KEDA ScaledObject" in result.stdout


def test_the_seed_block_is_verbatim_and_as_scraped_says_why_it_fails(
    examples: Path, test_data: Path
) -> None:
    restored = (examples / "seed-keda-scaledobject.yaml").read_text().splitlines()
    scraped_path = test_data / "seed-as-scraped" / "keda-scaledobject.yaml"
    scraped = scraped_path.read_text().splitlines()
    assert [line.strip() for line in restored] == [line.strip() for line in scraped]
    result = CliRunner().invoke(cli, ["check", str(scraped_path)])
    assert result.exit_code == 2
    assert ":17:1: YAML syntax error" in result.stderr
    assert "The lines after 'metadata:' start at column 1" in result.stderr


BASE = """\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: s}}
spec:
  scaleTargetRef: {{name: d}}
  minReplicaCount: {low}
  maxReplicaCount: 4
  triggers:
    - type: prometheus
      {metric_type}
      metadata:
        serverAddress: http://prometheus:9090
        query: '{query}'
        threshold: '{threshold}'
"""


@pytest.mark.parametrize(
    ("query", "threshold", "metric_type", "expected"),
    [
        ("sum(vllm:num_requests_waiting)", "10", "", []),
        ("max(vllm:kv_cache_usage_perc)", "0.9", "metricType: Value", []),
        ("max(vllm:kv_cache_usage_perc)", "90", "metricType: Value", ["a 0-1 fraction"]),
        (
            "avg(vllm:gpu_cache_usage_perc)",
            "0.8",
            "metricType: Value",
            ["removed from vLLM (v0.12 and later): write vllm:kv_cache_usage_perc"],
        ),
        ("max(vllm:num_requests_running)", "30", "", ["already a per-replica figure (max)"]),
        ("sum(rate(vllm:prompt_tokens_total[1m]))", "abc", "", ["non-numeric 'threshold'"]),
    ],
)
def test_trigger_rules(query: str, threshold: str, metric_type: str, expected: list[str]) -> None:
    text = BASE.format(low=1, query=query, threshold=threshold, metric_type=metric_type)
    errors, _ = lint(text)
    assert len(errors) == len(expected)
    for error, words in zip(errors, expected, strict=True):
        assert words in error


def test_bounds_and_missing_parts() -> None:
    text = BASE.format(low=9, query="sum(vllm:num_requests_waiting)", threshold="5", metric_type="")
    errors, _ = lint(text)
    assert errors == ["so.yaml:6:20: spec.minReplicaCount: minReplicaCount 9 > maxReplicaCount 4"]
    bare = "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nspec:\n  scaleTargetRef: {name: d}\n"
    errors, _ = lint(bare)
    assert errors == ["so.yaml:4:3: spec: missing 'triggers': nothing would scale it"]


def test_a_trigger_on_tiergates_scaler_needs_average_value() -> None:
    text = """\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
spec:
  scaleTargetRef: {name: vllm-qwen}
  triggers:
    - type: external
      metricType: Value
      metadata: {deployment: vllm-qwen}
"""
    errors, warnings = lint(text)
    assert [e.split(": ", 2)[1] for e in errors] == [
        "spec.triggers[0].metadata",
        "spec.triggers[0].metricType",
    ]
    assert "scalerAddress" in errors[0]
    assert "use AverageValue" in errors[1]
    assert warnings == []


def test_the_documented_scaled_object_for_tiergates_scaler_is_valid(examples: Path) -> None:
    result = CliRunner().invoke(cli, ["check", str(examples / "keda-tiergate-scaler.yaml")])
    assert result.exit_code == 0, result.output
    assert "valid KEDA ScaledObject" in result.stdout
