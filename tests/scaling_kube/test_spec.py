"""The ``kubernetes`` field of a scaling entry: what it accepts, how it refuses, and the source
built from it, which sends each deployment to its own API server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.scaling_kube.conftest import LABELS, NOW, ROTATED, TOKEN, WALL
from tests.scaling_kube.fake_kube import FakeKubernetes, deployment, pod
from tiergate.errors import SpecError
from tiergate.scaling.kubernetes import replicas_from_spec
from tiergate.scaling.snapshot import ReplicaCount
from tiergate.spec import parse_fleet

MODELS = """\
models:
  - {name: qwen, provider: openai-compatible, baseUrl: "http://vllm:8000/v1", model: q, costPer1kTokens: 1}
scaling:
"""


def entry(deployment: str, kubernetes: str | None) -> str:
    text = f"""\
  - deployment: {deployment}
    maxReplicas: 8
    coldStartS: 120
    targets: {{waitingPerReplica: 10}}
    signals: {{scrape: {{urls: ["http://10.0.0.5:8000/metrics"]}}}}
"""
    return text if kubernetes is None else text + f"    kubernetes: {kubernetes}\n"


def test_the_field_and_its_defaults() -> None:
    fleet = parse_fleet(
        MODELS
        + entry("vllm-qwen", "{}")
        + entry(
            "vllm-llama",
            '{namespace: inference, name: llama-3.1-70b, apiServer: "https://10.96.0.1:443", '
            "tokenFile: /var/run/secrets/tokens/scaler, caFile: /etc/kube/ca.crt}",
        )
        + entry("vllm-mistral", None),
        "fleet.yaml",
        env={},
    )
    qwen, llama, mistral = fleet.scaling
    assert qwen.kubernetes is not None
    assert llama.kubernetes is not None
    assert qwen.kubernetes.model_dump() == dict.fromkeys(
        ("namespace", "name", "api_server", "token_file", "ca_file")
    )
    assert llama.kubernetes.model_dump() == {
        "namespace": "inference",
        "name": "llama-3.1-70b",
        "api_server": "https://10.96.0.1:443",
        "token_file": "/var/run/secrets/tokens/scaler",
        "ca_file": "/etc/kube/ca.crt",
    }
    assert mistral.kubernetes is None


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            "{namespace: LLM}",
            "fleet.yaml:9:29: scaling[0].kubernetes.namespace: 'LLM' is not a Kubernetes "
            "namespace name: at most 63 lowercase letters, digits and '-', starting and ending "
            "with a letter or digit",
        ),
        (
            "{namespace: " + "n" * 64 + "}",
            "fleet.yaml:9:29: scaling[0].kubernetes.namespace: '" + "n" * 64 + "' is not a "
            "Kubernetes namespace name: at most 63 lowercase letters, digits and '-', starting "
            "and ending with a letter or digit",
        ),
        (
            "{name: vllm_qwen}",
            "fleet.yaml:9:24: scaling[0].kubernetes.name: 'vllm_qwen' is not a Kubernetes "
            "Deployment name: lowercase letters, digits, '-' and '.', starting and ending with a "
            "letter or digit",
        ),
        (
            '{apiServer: "kubernetes.default.svc:443"}',
            "fleet.yaml:9:29: scaling[0].kubernetes.apiServer: expected an absolute http:// or "
            "https:// URL with a host, got 'kubernetes.default.svc:443'",
        ),
        (
            '{apiServer: "http://127.0.0.1:8001", caFile: /etc/kube/ca.crt}',
            "fleet.yaml:9:17: scaling[0].kubernetes: caFile is set but apiServer "
            "'http://127.0.0.1:8001' is not https://: the CA would check nothing",
        ),
        (
            '{apiserver: "https://10.96.0.1"}',
            "fleet.yaml:9:18: scaling[0].kubernetes.apiserver: unknown key 'apiserver' (did you "
            "mean 'apiServer'?); valid keys: namespace, name, apiServer, tokenFile, caFile",
        ),
        (
            '{tokenFile: ""}',
            "fleet.yaml:9:29: scaling[0].kubernetes.tokenFile: expected a non-empty string",
        ),
    ],
)
def test_invalid_sections_are_refused_with_the_reason(section: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_fleet(MODELS + entry("vllm-qwen", section), "fleet.yaml", env={})
    assert [str(issue) for issue in caught.value.issues] == [message]


@pytest.fixture
async def clusters() -> AsyncIterator[tuple[FakeKubernetes, FakeKubernetes]]:
    """Two API servers, each accepting its own token, each with one deployment."""
    async with FakeKubernetes(token=TOKEN) as one, FakeKubernetes(token=ROTATED) as two:
        one.deployments[("llm", "vllm-qwen")] = deployment(
            "vllm-qwen", "llm", replicas=3, ready=2, labels=LABELS
        )
        one.pods["llm"] = [pod("vllm-qwen-3", "llm", LABELS, WALL - 20, "loading")]
        two.deployments[("inference", "llama-70b")] = deployment(
            "llama-70b", "inference", replicas=1, ready=1, labels={"app": "llama"}
        )
        yield one, two


async def test_each_deployment_goes_to_its_api_server(
    clusters: tuple[FakeKubernetes, FakeKubernetes], tmp_path: Path
) -> None:
    one, two = clusters
    (tmp_path / "one").write_text(TOKEN)
    (tmp_path / "two").write_text(ROTATED)
    fleet = parse_fleet(
        MODELS
        + entry(
            "vllm-qwen",
            f'{{namespace: llm, apiServer: "http://127.0.0.1:{one.port}", '
            f"tokenFile: {tmp_path / 'one'}}}",
        )
        + entry(
            "vllm-llama",
            f'{{namespace: inference, name: llama-70b, apiServer: "http://127.0.0.1:{two.port}", '
            f"tokenFile: {tmp_path / 'two'}}}",
        )
        + entry("vllm-mistral", None),
        "fleet.yaml",
        env={},
    )
    async with aiohttp.ClientSession() as session:
        source = replicas_from_spec(fleet.scaling, session, wall=lambda: WALL)
        assert source is not None
        # The entry's cold start (120 s) from the pod's creation, 20 s ago.
        assert await source.count("vllm-qwen", NOW) == ReplicaCount(
            ready=2, pending=1, pending_ready_at=(NOW + 100,)
        )
        assert await source.count("vllm-llama", NOW) == ReplicaCount(ready=1)
        assert await source.count("vllm-mistral", NOW) is None
    assert {seen.path for seen in one.seen} == {
        "/apis/apps/v1/namespaces/llm/deployments/vllm-qwen",
        "/api/v1/namespaces/llm/pods",
    }
    assert {seen.path for seen in two.seen} == {
        "/apis/apps/v1/namespaces/inference/deployments/llama-70b",
        "/api/v1/namespaces/inference/pods",
    }


async def test_no_source_without_the_field() -> None:
    """The controller then notes that it knows no Kubernetes API, rather than that it failed."""
    fleet = parse_fleet(
        MODELS + entry("vllm-qwen", None) + entry("vllm-llama", None), "f.yaml", env={}
    )
    async with aiohttp.ClientSession() as session:
        assert replicas_from_spec(fleet.scaling, session) is None
