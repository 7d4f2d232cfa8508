"""``tiergate check`` end to end: through click's runner and as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from tiergate.cli.main import cli

BAD = """\
routing:
  cascadeOrder: [qwen, claude]
models:
  - name: qwen
    provider: openai-compatble
    baseUrl: http://vllm:8000/v1
    model: Qwen/Qwen3-32B
"""


def test_check_prints_the_cascade_of_a_valid_fleet(examples: Path) -> None:
    result = CliRunner().invoke(
        cli, ["check", str(examples / "seed-bifrost-config.yaml")], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "valid, default model self-hosted-qwen3" in lines[0]
    rows = [line for line in lines if line.startswith("│")]
    assert [row.split("│")[2].strip() for row in rows] == [
        "self-hosted-qwen3",
        "self-hosted-glm5",
        "bedrock-claude-sonnet",
    ]
    assert "bedrock us-east-1" in rows[2]
    assert "0.003" in rows[2]
    assert "status 500, 502, 503, 504; no first byte within 30000 ms" in result.output


def test_check_reports_every_error_and_exits_2(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(BAD)
    result = CliRunner().invoke(cli, ["check", str(spec)])
    assert result.exit_code == 2
    assert f"{spec}: invalid (2 errors)" in result.output
    assert (
        f"{spec}:2:24: routing.cascadeOrder[1]: 'claude' names no model; models: qwen"
        in result.output
    )
    assert "did you mean 'openai-compatible'?" in result.output


def test_check_json_for_machines(examples: Path, tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(BAD)
    result = CliRunner().invoke(
        cli, ["check", "--format", "json", str(examples / "seed-3tier.yaml"), str(spec)]
    )
    assert result.exit_code == 2
    report = json.loads(result.output)
    assert report["valid"] is False
    good, bad = report["fleets"]
    assert good["valid"] is True
    assert [tier["name"] for tier in good["cascade"]] == [
        "onprem-dgx-llm",
        "cloud-eks-llm",
        "bedrock-fallback",
    ]
    assert good["cascade"][0]["healthCheck"] == {
        "url": "http://hybrid-node-vllm.inference:8000/health",
        "intervalMs": 10000,
        "timeoutMs": 2000,
        "unhealthyThreshold": 3,
        "healthyThreshold": 2,
    }
    assert good["fallback"] == {
        "statusCodes": [429, 500, 502, 503, 504],
        "latencyMs": None,
        "errorRate": None,
    }
    assert [(e["line"], e["column"], e["path"]) for e in bad["errors"]] == [
        (2, 24, "routing.cascadeOrder[1]"),
        (5, 15, "models[0].provider"),
    ]


def test_json_never_contains_the_api_key(tmp_path: Path) -> None:
    spec = tmp_path / "keyed.yaml"
    spec.write_text(
        "models:\n  - name: a\n    provider: openai-compatible\n    baseUrl: http://a/v1\n"
        "    model: m\n    apiKey: ${UPSTREAM_KEY}\n"
    )
    result = CliRunner().invoke(
        cli, ["check", "--format", "json", str(spec)], env={"UPSTREAM_KEY": "sk-hidden-123"}
    )
    assert result.exit_code == 0, result.output
    assert "sk-hidden-123" not in result.output
    assert json.loads(result.output)["fleets"][0]["cascade"][0]["apiKeySet"] is True


def test_check_as_a_subprocess(examples: Path, tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "200"}
    ok = subprocess.run(
        [sys.executable, "-m", "tiergate", "check", str(examples / "seed-3tier.yaml")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert "onprem-dgx-llm" in ok.stdout
    assert "http://hybrid-node-vllm.inference:8000/health every 10 s" in ok.stdout

    missing = subprocess.run(
        [sys.executable, "-m", "tiergate", "check", str(tmp_path / "absent.yaml")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert missing.returncode == 2
    assert "absent.yaml: no such file" in missing.stderr
    assert missing.stdout == ""


def test_version_and_help() -> None:
    runner = CliRunner()
    version = runner.invoke(cli, ["--version"])
    assert version.exit_code == 0
    assert version.output.startswith("tiergate, version ")
    usage = runner.invoke(cli, ["--help"])
    assert usage.exit_code == 0
    assert "check" in usage.output
    unknown = runner.invoke(cli, ["chek"])
    assert unknown.exit_code == 2
    assert "No such command 'chek'" in unknown.output
