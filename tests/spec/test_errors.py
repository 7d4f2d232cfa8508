"""Malformed fleet specs: every error names file, line, column and field, and all are reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiergate.errors import SpecError
from tiergate.spec import load_fleet, parse_fleet

VALID = """\
routing:
  defaultModel: self-hosted-qwen3
  cascadeOrder:
    - self-hosted-qwen3
    - bedrock-claude
  fallbackConditions:
    - statusCode: [500, 503]
    - latencyMs: "> 30000"
models:
  - name: self-hosted-qwen3
    provider: openai-compatible
    baseUrl: http://vllm:8000/v1
    model: Qwen/Qwen3-32B
    costPer1kTokens: 0.001
  - name: bedrock-claude
    provider: bedrock
    model: anthropic.claude-sonnet-4-20250514
    region: us-east-1
    costPer1kTokens: 0.003
"""

URL_HINT = "the URL of the engine's OpenAI API, such as http://vllm:8000/v1"
COMPARATOR = (
    'expected a comparator expression such as "> 30000" (operator > or >=, then a non-negative '
    "number), got"
)

CASES: dict[str, tuple[str, list[str]]] = {
    "unknown top-level key": (
        VALID.replace("routing:", "routng:"),
        [
            "fleet.yaml:1:1: routng: unknown key 'routng' (did you mean 'routing'?); "
            "valid keys: routing, models, gateway, governance, tracing, scaling, deployments, simulation, nodePools, quotas, cluster"
        ],
    ),
    "unknown model key": (
        VALID.replace("baseUrl:", "baseURL:"),
        [
            "fleet.yaml:10:5: models[0]: missing required key 'baseUrl' for provider "
            f"openai-compatible ('self-hosted-qwen3'): {URL_HINT}",
            "fleet.yaml:12:5: models[0].baseURL: unknown key 'baseURL' (did you mean 'baseUrl'?); "
            "valid keys: name, provider, model, baseUrl, priority, costPer1kTokens, maxTokens, "
            "region, healthCheck, apiKey, timeouts, spillover, pricing",
        ],
    ),
    "unknown routing key": (
        VALID.replace("cascadeOrder:", "cascadeorder:"),
        [
            "fleet.yaml:3:3: routing.cascadeorder: unknown key 'cascadeorder' (did you mean "
            "'cascadeOrder'?); valid keys: defaultModel, strategy, cascadeOrder, fallbackConditions, breaker"
        ],
    ),
    "wrong type: integer": (
        VALID.replace("costPer1kTokens: 0.001", "costPer1kTokens: 0.001\n    priority: high"),
        ["fleet.yaml:15:15: models[0].priority: expected an integer, got 'high'"],
    ),
    "wrong type: list": (
        VALID.replace(
            "  cascadeOrder:\n    - self-hosted-qwen3\n    - bedrock-claude\n",
            "  cascadeOrder: self-hosted-qwen3\n",
        ),
        ["fleet.yaml:3:17: routing.cascadeOrder: expected a list, got 'self-hosted-qwen3'"],
    ),
    "cascade entry naming no model": (
        VALID.replace("    - bedrock-claude\n  fallback", "    - bedrock-claud\n  fallback"),
        [
            "fleet.yaml:5:7: routing.cascadeOrder[1]: 'bedrock-claud' names no model (did you "
            "mean 'bedrock-claude'?); models: self-hosted-qwen3, bedrock-claude"
        ],
    ),
    "cascade entry twice": (
        VALID.replace("    - bedrock-claude\n  fallback", "    - self-hosted-qwen3\n  fallback"),
        [
            "fleet.yaml:5:7: routing.cascadeOrder[1]: 'self-hosted-qwen3' appears twice in the cascade"
        ],
    ),
    "duplicate model names": (
        VALID.replace("name: bedrock-claude", "name: self-hosted-qwen3"),
        [
            "fleet.yaml:5:7: routing.cascadeOrder[1]: 'bedrock-claude' names no model; "
            "models: self-hosted-qwen3",
            "fleet.yaml:15:11: models[1].name: duplicate model name 'self-hosted-qwen3' (first "
            "used by models[0] at line 10); names must be unique",
        ],
    ),
    "comparator with a wrong operator": (
        VALID.replace('"> 30000"', '"< 30000"'),
        [f"fleet.yaml:8:18: routing.fallbackConditions[1].latencyMs: {COMPARATOR} '< 30000'"],
    ),
    "comparator that is a word": (
        VALID.replace('"> 30000"', "fast"),
        [f"fleet.yaml:8:18: routing.fallbackConditions[1].latencyMs: {COMPARATOR} 'fast'"],
    ),
    "error rate above 1": (
        VALID.replace('    - latencyMs: "> 30000"', '    - errorRate: "> 10"'),
        [
            "fleet.yaml:8:18: routing.fallbackConditions[1].errorRate: expected an error-rate "
            "limit between 0 and 1 (a share, 0.1 = 10%), got > 10"
        ],
    ),
    "two keys in one fallback condition": (
        VALID.replace(
            '    - latencyMs: "> 30000"', '    - latencyMs: "> 30000"\n      errorRate: "> 0.1"'
        ),
        [
            "fleet.yaml:8:7: routing.fallbackConditions[1]: each fallback condition sets exactly "
            "one of statusCode, latencyMs, errorRate, got 2"
        ],
    ),
    "status code out of range": (
        VALID.replace("503]", "600]"),
        [
            "fleet.yaml:7:25: routing.fallbackConditions[0].statusCode[1]: expected a number "
            "<= 599, got 600"
        ],
    ),
    "negative price": (
        VALID.replace("0.003", "-0.003"),
        ["fleet.yaml:19:22: models[1].costPer1kTokens: expected a number >= 0, got -0.003"],
    ),
    "missing environment variable": (
        VALID.replace(
            "    costPer1kTokens: 0.001", "    costPer1kTokens: 0.001\n    apiKey: ${QWEN_API_KEY}"
        ),
        [
            "fleet.yaml:15:13: models[0].apiKey: environment variable QWEN_API_KEY is not set "
            "(referenced as ${QWEN_API_KEY})"
        ],
    ),
    "invalid environment reference": (
        VALID.replace("http://vllm:8000/v1", "http://${VLLM HOST}:8000/v1"),
        [
            "fleet.yaml:12:14: models[0].baseUrl: invalid environment reference '${VLLM HOST}': "
            "expected ${NAME} or ${NAME:-default} with NAME made of letters, digits and "
            "underscores",
        ],
    ),
    "invalid URL": (
        VALID.replace("http://vllm:8000/v1", "vllm:8000/v1"),
        [
            "fleet.yaml:12:14: models[0].baseUrl: expected an absolute http:// or https:// URL "
            "with a host, got 'vllm:8000/v1'"
        ],
    ),
    "YAML syntax error": (
        VALID.replace("[500, 503]", "[500, 503"),
        [
            "fleet.yaml:8:16: YAML syntax error: while parsing a flow sequence, expected ',' or "
            "']', but got ':'"
        ],
    ),
    "tab indentation": (
        VALID.replace("    model: Qwen/Qwen3-32B", "\tmodel: Qwen/Qwen3-32B"),
        [
            "fleet.yaml:13:1: YAML syntax error: while scanning for the next token, found "
            "character '\\t' that cannot start any token"
        ],
    ),
    "two documents": (
        VALID + "---\nmodels: []\n",
        [
            "fleet.yaml:20:1: YAML syntax error: expected a single document in the stream, but "
            "found another document"
        ],
    ),
    "empty file": (
        "",
        ["fleet.yaml:1:1: the file is empty: expected a mapping with a 'models' list"],
    ),
    "comments only": (
        "# nothing yet\n",
        ["fleet.yaml:1:1: the file is empty: expected a mapping with a 'models' list"],
    ),
    "a list document": (
        "- name: a\n",
        [
            "fleet.yaml:1:1: expected a mapping at the top level (keys such as 'routing' and "
            "'models'), got a list"
        ],
    ),
    "a scalar document": (
        "just text\n",
        [
            "fleet.yaml:1:1: expected a mapping at the top level (keys such as 'routing' and "
            "'models'), got a string"
        ],
    ),
    "unknown strategy": (
        VALID.replace("  defaultModel", "  strategy: round-robin\n  defaultModel"),
        ["fleet.yaml:2:13: routing.strategy: expected one of 'cascade', got 'round-robin'"],
    ),
    "unknown provider": (
        VALID.replace("provider: openai-compatible", "provider: openai"),
        [
            "fleet.yaml:11:15: models[0].provider: expected one of 'openai-compatible', "
            "'bedrock', got 'openai' (did you mean 'openai-compatible'?)"
        ],
    ),
    "missing upstream model": (
        VALID.replace("    model: Qwen/Qwen3-32B\n", ""),
        ["fleet.yaml:10:5: models[0]: missing required key 'model'"],
    ),
    "missing baseUrl": (
        VALID.replace("    baseUrl: http://vllm:8000/v1\n", ""),
        [
            "fleet.yaml:10:5: models[0]: missing required key 'baseUrl' for provider "
            f"openai-compatible ('self-hosted-qwen3'): {URL_HINT}"
        ],
    ),
    "default model naming no model": (
        VALID.replace("defaultModel: self-hosted-qwen3", "defaultModel: qwen3"),
        [
            "fleet.yaml:2:17: routing.defaultModel: 'qwen3' names no model; models: "
            "self-hosted-qwen3, bedrock-claude"
        ],
    ),
    "duplicate YAML key": (
        VALID.replace("    model: Qwen/Qwen3-32B\n", "    model: Qwen/Qwen3-32B\n    model: x\n"),
        ["fleet.yaml:14:5: models[0].model: duplicate key 'model' (first defined at line 13)"],
    ),
    "invalid region": (
        VALID.replace("us-east-1", "us east"),
        [
            "fleet.yaml:18:13: models[1].region: expected an AWS region such as 'us-east-1', got 'us east'"
        ],
    ),
    "no models": (
        "models: []\n",
        ["fleet.yaml:1:9: models: expected at least one item, got an empty list"],
    ),
    "models missing": (
        "routing:\n  strategy: cascade\n",
        ["fleet.yaml:1:1: missing required key 'models'"],
    ),
    "model that is not a mapping": (
        "models:\n  - just-a-name\n",
        ["fleet.yaml:2:5: models[0]: expected a mapping, got 'just-a-name'"],
    ),
    "zero max tokens": (
        VALID.replace("    region: us-east-1", "    region: us-east-1\n    maxTokens: 0"),
        ["fleet.yaml:19:16: models[1].maxTokens: expected a number > 0, got 0"],
    ),
    "bad health check": (
        VALID.replace(
            "    costPer1kTokens: 0.001",
            "    costPer1kTokens: 0.001\n    healthCheck:\n      endpoint: health\n      intervalMs: -5",
        ),
        [
            "fleet.yaml:16:17: models[0].healthCheck.endpoint: expected a path starting with '/' "
            "or an http(s) URL, got 'health'",
            "fleet.yaml:17:19: models[0].healthCheck.intervalMs: expected a number > 0, got -5",
        ],
    ),
    "spillover on bedrock": (
        VALID.replace(
            "    costPer1kTokens: 0.003",
            "    costPer1kTokens: 0.003\n    spillover:\n      maxWaiting: 4",
        ),
        [
            "fleet.yaml:21:7: models[1].spillover: spillover reads a self-hosted engine's vLLM "
            "metrics; Bedrock publishes none (its throttling answers 429: list 429 in "
            "fallbackConditions.statusCode instead)",
        ],
    ),
    "scaling traps": (
        VALID
        + """scaling:
  - deployment: vllm-qwen
    tier: self-hosted-qwn3
    maxReplicas: 8
    targets: {kvCacheUsage: 80}
    signals: {prometheus: {url: "http://prometheus:9090"}}
""",
        [
            "fleet.yaml:22:11: scaling[0].tier: 'self-hosted-qwn3' names no model (did you mean "
            "'self-hosted-qwen3'?); models: self-hosted-qwen3, bedrock-claude",
            "fleet.yaml:24:29: scaling[0].targets.kvCacheUsage: vllm:kv_cache_usage_perc is a "
            "0-1 fraction (1 = 100%): 80 is never reached; for 80% write 0.8",
        ],
    ),
    "scale-down sooner than a cold start": (
        VALID
        + """scaling:
  - deployment: vllm-qwen
    maxReplicas: 8
    coldStartS: 300
    targets: {kvCacheUsage: 0.8}
    windows: {scaleDownStabilizationS: 60}
    signals: {scrape: {urls: ["http://10.0.0.5:8000/metrics"]}}
""",
        [
            "fleet.yaml:21:5: scaling[0]: windows.scaleDownStabilizationS 60 is shorter than "
            "coldStartS 300: a replica given back could not come back in time",
        ],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_spec_reports_exact_messages(case: str) -> None:
    text, expected = CASES[case]
    with pytest.raises(SpecError) as caught:
        parse_fleet(text, "fleet.yaml", env={})
    assert [str(issue) for issue in caught.value.issues] == expected


def test_every_error_of_a_file_is_reported_at_once() -> None:
    text = (
        VALID.replace("routing:", "routng:")
        .replace("provider: bedrock", "provider: bedrok")
        .replace("0.001", "cheap")
        .replace("http://vllm:8000/v1", "${VLLM_URL}")
    )
    with pytest.raises(SpecError) as caught:
        parse_fleet(text, "fleet.yaml", env={})
    assert [(i.line, i.path) for i in caught.value.issues] == [
        (1, "routng"),
        (12, "models[0].baseUrl"),  # the missing variable, not the empty URL it leaves
        (14, "models[0].costPer1kTokens"),
        (16, "models[1].provider"),
    ]
    assert "did you mean 'bedrock'" in caught.value.issues[3].message
    assert str(caught.value).startswith("4 errors in fleet spec:\n")


def test_secret_values_from_the_environment_never_appear_in_errors() -> None:
    text = VALID.replace("http://vllm:8000/v1", "${VLLM_URL}")
    with pytest.raises(SpecError) as caught:
        parse_fleet(text, "fleet.yaml", env={"VLLM_URL": "sk-very-secret"})
    (issue,) = caught.value.issues
    assert issue.path == "models[0].baseUrl"
    assert issue.message == (
        "expected an absolute http:// or https:// URL with a host, got (the value from the "
        "environment)"
    )
    assert "sk-very-secret" not in str(caught.value)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SpecError, match=r"nope\.yaml: no such file"):
        load_fleet(missing)
    with pytest.raises(SpecError, match="is a directory"):
        load_fleet(tmp_path)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"models:\n  - \xff\xfe\n")
    with pytest.raises(SpecError, match=r"binary.yaml:2:5: not UTF-8 text \(byte 12\)"):
        load_fleet(binary)
