"""A fleet's scaling entries become the policies of their modes."""

from __future__ import annotations

import pytest

from tiergate.errors import SpecError
from tiergate.scaling.from_spec import hpa_settings, llm_settings, policies
from tiergate.scaling.policy import HpaPolicy, LlmPolicy, corrected_seed_hpa_settings
from tiergate.scaling.snapshot import ReplicaSignals, Role, Snapshot
from tiergate.spec import parse_fleet

FLEET = """\
models:
  - {name: qwen, provider: openai-compatible, baseUrl: "http://vllm:8000/v1", model: q, costPer1kTokens: 1}
scaling:
  - deployment: vllm-qwen
    tier: qwen
    minReplicas: 2
    maxReplicas: 8
    coldStartS: 300
    targets: {kvCacheUsage: 0.8, waitingPerReplica: 10, ttftP95S: 2}
    signals: {prometheus: {url: "http://prometheus:9090", selector: '{deployment="vllm-qwen"}'}}
  - deployment: vllm-qwen-prefill
    role: prefill
    mode: hpa
    maxReplicas: 4
    targets: {ttftP95S: 1.5, promptTokensPerReplicaS: 8000}
    signals: {scrape: {urls: ["http://10.0.0.7:8000/metrics"]}}
"""


def test_entries_become_policies_of_their_mode() -> None:
    unified, prefill = parse_fleet(FLEET, "f.yaml", env={}).scaling
    first, other = policies(unified)
    assert isinstance(first, LlmPolicy)
    assert isinstance(other, HpaPolicy)
    assert isinstance(policies(prefill)[0], HpaPolicy)
    # The seed's three signals, written correctly, are exactly the corrected seed triggers.
    assert hpa_settings(unified).triggers == corrected_seed_hpa_settings().triggers
    settings = llm_settings(prefill)
    assert settings.role is Role.PREFILL
    assert (settings.targets.ttft_p95_s, settings.targets.prompt_token_rate) == (1.5, 8000)


def test_a_busy_deployment_scales_up_in_both_modes() -> None:
    (unified, _) = parse_fleet(FLEET, "f.yaml", env={}).scaling
    busy = Snapshot(
        deployment="vllm-qwen",
        role=Role.UNIFIED,
        at=1000.0,
        ready=2,
        replicas=(ReplicaSignals(0.97, 30, 60), ReplicaSignals(0.95, 34, 60)),
        request_rate=12.0,
        ttft_p95_s=4.0,
    )
    for policy in policies(unified):
        decision = policy.decide(busy, 1000.0)
        assert decision.desired > 2, decision
        assert decision.reason


def test_a_role_scales_only_on_its_own_signals() -> None:
    text = FLEET.replace(
        "targets: {ttftP95S: 1.5, promptTokensPerReplicaS: 8000}", "targets: {kvCacheUsage: 0.8}"
    )
    with pytest.raises(SpecError) as caught:
        parse_fleet(text, "f.yaml", env={})
    (issue,) = caught.value.issues
    assert "a prefill deployment does not scale on kv_cache_usage" in issue.message
