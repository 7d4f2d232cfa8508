"""What the Kubernetes source counts: ready and pending replicas of a Deployment, and when the
pending ones should be ready, from a fake API server that answers as the real one does."""

from __future__ import annotations

import os
from collections.abc import Callable
from logging import LogRecord
from pathlib import Path

import pytest

from tests.scaling_kube.conftest import (
    COLD_START_S,
    LABELS,
    NAMESPACE,
    NOW,
    ROTATED,
    TOKEN,
    WALL,
    MakeReplicas,
)
from tests.scaling_kube.fake_kube import FakeKubernetes, deployment, pod
from tiergate.scaling.kubernetes import DeploymentRef
from tiergate.scaling.snapshot import ReplicaCount

KubeLogs = Callable[[], list[LogRecord]]


def due(created_ago_s: float) -> float:
    """When a pod created ``created_ago_s`` before the tests' instant should be ready, on the
    caller's clock."""
    return NOW - created_ago_s + COLD_START_S


def qwen(kube: FakeKubernetes, *, replicas: int, ready: int) -> None:
    kube.deployments[(NAMESPACE, "vllm-qwen")] = deployment(
        "vllm-qwen", NAMESPACE, replicas=replicas, ready=ready, labels=LABELS
    )


async def test_ready_and_pending_with_their_ready_times(
    kube: FakeKubernetes, make_replicas: MakeReplicas, kube_logs: KubeLogs
) -> None:
    qwen(kube, replicas=4, ready=1)
    other = {"app.kubernetes.io/name": "vllm-llama"}
    kube.pods[NAMESPACE] = [
        pod("vllm-qwen-1", NAMESPACE, LABELS, WALL - 3600, "ready"),
        pod("vllm-qwen-2", NAMESPACE, LABELS, WALL - 20, "unscheduled"),
        pod("vllm-qwen-3", NAMESPACE, LABELS, WALL - 250, "loading"),
        pod("vllm-qwen-4", NAMESPACE, LABELS, WALL - 90, "loading"),
        # Leaving (a scale-down, a rollout) and evicted pods will never be ready.
        pod("vllm-qwen-5", NAMESPACE, LABELS, WALL - 900, "loading", deleting=True),
        pod("vllm-qwen-6", NAMESPACE, LABELS, WALL - 800, "evicted"),
        # Another deployment's pod in the namespace is none of ours.
        pod("vllm-llama-1", NAMESPACE, other, WALL - 700, "loading"),
    ]
    count = await make_replicas().count("vllm-qwen", NOW)
    assert count == ReplicaCount(
        ready=1, pending=3, pending_ready_at=(due(250), due(90), due(20)), note=None
    )
    assert count.pending_ready_at == (5050.0, 5210.0, 5280.0)
    assert [seen.path for seen in kube.seen] == [
        "/apis/apps/v1/namespaces/llm/deployments/vllm-qwen",
        "/api/v1/namespaces/llm/pods",
    ]
    assert kube.seen[1].query == {"labelSelector": "app.kubernetes.io/name=vllm-qwen"}
    assert kube.last_authorization == f"Bearer {TOKEN}"
    assert kube_logs() == []


async def test_ready_times_move_onto_the_callers_clock(
    kube: FakeKubernetes, make_replicas: MakeReplicas
) -> None:
    """The same pods seen by a caller on the wall clock and by one on a monotonic clock."""
    qwen(kube, replicas=2, ready=1)
    kube.pods[NAMESPACE] = [
        pod("vllm-qwen-1", NAMESPACE, LABELS, WALL - 3600, "ready"),
        pod("vllm-qwen-2", NAMESPACE, LABELS, WALL - 100, "loading"),
    ]
    on_wall = await make_replicas().count("vllm-qwen", WALL)
    on_monotonic = await make_replicas().count("vllm-qwen", NOW)
    assert on_wall is not None
    assert on_monotonic is not None
    assert on_wall.pending_ready_at == (WALL + 200,)
    assert on_monotonic.pending_ready_at == (NOW + 200,)


async def test_more_pending_than_pods_notes_the_ones_without_a_pod(
    kube: FakeKubernetes, make_replicas: MakeReplicas
) -> None:
    """Just after a scale-up the ReplicaSet has not made every pod yet; none is ready, so the
    Deployment has no readyReplicas field at all."""
    qwen(kube, replicas=3, ready=0)
    assert "readyReplicas" not in kube.deployments[(NAMESPACE, "vllm-qwen")]["status"]
    kube.pods[NAMESPACE] = [pod("vllm-qwen-1", NAMESPACE, LABELS, WALL - 30, "unscheduled")]
    count = await make_replicas().count("vllm-qwen", NOW)
    assert count == ReplicaCount(
        ready=0,
        pending=3,
        pending_ready_at=(due(30),),
        note="2 of 3 pending replicas have no pod yet",
    )


async def test_surplus_not_ready_pods_give_the_earliest_times(
    kube: FakeKubernetes, make_replicas: MakeReplicas
) -> None:
    """A rollout surges new pods: three not ready, but only one replica is missing."""
    qwen(kube, replicas=2, ready=1)
    kube.pods[NAMESPACE] = [
        pod(f"vllm-qwen-{age}", NAMESPACE, LABELS, WALL - age, "loading") for age in (10, 200, 60)
    ]
    count = await make_replicas().count("vllm-qwen", NOW)
    assert count == ReplicaCount(ready=1, pending=1, pending_ready_at=(due(200),))


async def test_scaled_to_zero(kube: FakeKubernetes, make_replicas: MakeReplicas) -> None:
    qwen(kube, replicas=0, ready=0)
    assert await make_replicas().count("vllm-qwen", NOW) == ReplicaCount(ready=0, pending=0)


async def test_selector_with_expressions(kube: FakeKubernetes, make_replicas: MakeReplicas) -> None:
    rules = [
        {"key": "tier", "operator": "In", "values": ["gpu", "gpu-spot"]},
        {"key": "canary", "operator": "DoesNotExist"},
    ]
    kube.deployments[(NAMESPACE, "vllm-qwen")] = deployment(
        "vllm-qwen", NAMESPACE, replicas=3, ready=0, labels=LABELS, expressions=rules
    )
    kube.pods[NAMESPACE] = [
        pod("vllm-qwen-1", NAMESPACE, {**LABELS, "tier": "gpu"}, WALL - 10, "loading"),
        pod("vllm-qwen-2", NAMESPACE, {**LABELS, "tier": "gpu-spot"}, WALL - 20, "loading"),
        pod("vllm-qwen-3", NAMESPACE, {**LABELS, "tier": "cpu"}, WALL - 30, "loading"),
        pod("vllm-qwen-4", NAMESPACE, {**LABELS, "tier": "gpu", "canary": "1"}, WALL, "loading"),
    ]
    count = await make_replicas().count("vllm-qwen", NOW)
    assert kube.seen[-1].query["labelSelector"] == (
        "app.kubernetes.io/name=vllm-qwen,tier in (gpu,gpu-spot),!canary"
    )
    assert count is not None
    assert count.pending_ready_at == (due(20), due(10))


async def test_deployment_name_differs_from_the_entry(
    kube: FakeKubernetes, make_replicas: MakeReplicas
) -> None:
    kube.deployments[("inference", "qwen3-32b")] = deployment(
        "qwen3-32b", "inference", replicas=2, ready=2, labels=LABELS
    )
    replicas = make_replicas(ref=DeploymentRef("qwen3-32b", "inference", COLD_START_S))
    assert await replicas.count("vllm-qwen", NOW) == ReplicaCount(ready=2, pending=0)
    assert kube.seen[0].path == "/apis/apps/v1/namespaces/inference/deployments/qwen3-32b"


async def test_a_deployment_it_does_not_watch_is_unknown(
    kube: FakeKubernetes, make_replicas: MakeReplicas
) -> None:
    assert await make_replicas().count("vllm-llama", NOW) is None
    assert kube.seen == []


def rotate(token_file: Path, how: str) -> None:
    before = token_file.stat()
    if how == "rewritten in place":
        token_file.write_text(ROTATED + "\n")
    elif how == "rewritten within one mtime tick":
        # Coarse file times: the new token has the old one's inode, size and mtime.
        token_file.write_text(ROTATED + "\n")
        os.utime(token_file, ns=(before.st_atime_ns, before.st_mtime_ns))
    else:
        fresh = token_file.with_name("..2025_06_15_09_00_00.token")
        fresh.write_text(ROTATED + "\n")
        os.replace(fresh, token_file)


@pytest.mark.parametrize(
    "how", ["rewritten in place", "rewritten within one mtime tick", "replaced by the kubelet"]
)
async def test_a_rotated_token_is_read_again(
    kube: FakeKubernetes,
    make_replicas: MakeReplicas,
    token_file: Path,
    kube_logs: KubeLogs,
    how: str,
) -> None:
    qwen(kube, replicas=1, ready=1)
    replicas = make_replicas()
    assert await replicas.count("vllm-qwen", NOW) == ReplicaCount(ready=1)
    assert kube.last_authorization == f"Bearer {TOKEN}"
    # The API server now accepts only the new token; the file changes, keeping its size.
    kube.token = ROTATED
    rotate(token_file, how)
    assert await replicas.count("vllm-qwen", NOW) == ReplicaCount(ready=1)
    assert kube.last_authorization == f"Bearer {ROTATED}"
    assert kube_logs() == []


async def test_service_account_token_and_namespace_by_default(
    kube: FakeKubernetes, make_replicas: MakeReplicas, tmp_path: Path
) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(TOKEN)
    (account / "namespace").write_text("inference")
    kube.deployments[("inference", "vllm-qwen")] = deployment(
        "vllm-qwen", "inference", replicas=1, ready=1, labels=LABELS
    )
    replicas = make_replicas(token_file=None, secrets=account, ref=DeploymentRef("vllm-qwen"))
    assert await replicas.count("vllm-qwen", NOW) == ReplicaCount(ready=1)
    assert kube.seen[0].path == "/apis/apps/v1/namespaces/inference/deployments/vllm-qwen"
    assert kube.last_authorization == f"Bearer {TOKEN}"


async def test_outside_a_cluster_namespace_default_and_no_token(
    kube: FakeKubernetes, make_replicas: MakeReplicas
) -> None:
    """Through ``kubectl proxy``: no service account files, the proxy adds the credentials."""
    kube.token = None
    kube.deployments[("default", "vllm-qwen")] = deployment(
        "vllm-qwen", "default", replicas=1, ready=1, labels=LABELS
    )
    replicas = make_replicas(token_file=None, ref=DeploymentRef("vllm-qwen"))
    assert await replicas.count("vllm-qwen", NOW) == ReplicaCount(ready=1)
    assert kube.seen[0].path == "/apis/apps/v1/namespaces/default/deployments/vllm-qwen"
    assert kube.last_authorization is None
