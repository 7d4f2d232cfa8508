"""When the Kubernetes API cannot answer: ``None`` (the controller falls back), one log line when
an outage starts and one when it ends, a message saying what to fix, and never the token."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from logging import LogRecord
from pathlib import Path

import pytest

from tests.scaling_kube.conftest import LABELS, NAMESPACE, NOW, TOKEN, WALL, MakeReplicas
from tests.scaling_kube.fake_kube import FakeKubernetes, deployment, pod
from tiergate.scaling.kubernetes import KubernetesReplicas
from tiergate.scaling.snapshot import ReplicaCount

KubeLogs = Callable[[], list[LogRecord]]
OUTAGE_READS = 3
CA = Path(__file__).with_name("ca.crt")  # a self-signed CA certificate (no key: none is served)


@dataclass(frozen=True)
class Outage:
    """A way for the deployment read to fail, how to end it, and what the log line says."""

    start: Callable[[FakeKubernetes], None]
    end: Callable[[FakeKubernetes], None]
    says: str


def _qwen(kube: FakeKubernetes) -> None:
    kube.deployments[(NAMESPACE, "vllm-qwen")] = deployment(
        "vllm-qwen", NAMESPACE, replicas=3, ready=1, labels=LABELS
    )
    kube.pods[NAMESPACE] = [
        pod("vllm-qwen-1", NAMESPACE, LABELS, WALL - 3600, "ready"),
        pod("vllm-qwen-2", NAMESPACE, LABELS, WALL - 100, "loading"),
        pod("vllm-qwen-3", NAMESPACE, LABELS, WALL - 50, "loading"),
    ]


def _drop_deployment(kube: FakeKubernetes) -> None:
    del kube.deployments[(NAMESPACE, "vllm-qwen")]


OUTAGES = {
    "token rejected": Outage(
        lambda kube: setattr(kube, "token", "a-token-of-another-cluster"),
        lambda kube: setattr(kube, "token", TOKEN),
        "unauthorized: the API server rejected the token from {token_file} (expired, or of "
        "another cluster); the API server said: Unauthorized",
    ),
    "RBAC denies": Outage(
        lambda kube: kube.forbidden.add("deployments"),
        lambda kube: kube.forbidden.discard("deployments"),
        "forbidden: RBAC does not let the scaler get deployments.apps in namespace llm; its "
        "service account needs get on deployments.apps and list on pods there (a Role and a "
        'RoleBinding); the API server said: deployments.apps "vllm-qwen" is forbidden: User '
        '"system:serviceaccount:tiergate:tiergate-scaler" cannot get resource "deployments" '
        'in API group "apps" in the namespace "llm"',
    ),
    "deployment missing": Outage(
        _drop_deployment,
        _qwen,
        "deployment vllm-qwen not found in namespace llm",
    ),
    "internal error": Outage(
        lambda kube: kube.broken.add("deployments"),
        lambda kube: kube.broken.discard("deployments"),
        "HTTP 500 from {api}; the API server said: Internal error occurred: etcdserver: "
        "request timed out",
    ),
    "no answer": Outage(
        lambda kube: kube.stalled.add("deployments"),
        lambda kube: kube.stalled.discard("deployments"),
        "no answer from {api} within 0.2 s",
    ),
    "not JSON": Outage(
        lambda kube: kube.garbled.add("deployments"),
        lambda kube: kube.garbled.discard("deployments"),
        "HTTP 200 from {api} with a body that is not a JSON object",
    ),
}


HEALTHY = ReplicaCount(ready=1, pending=2, pending_ready_at=(NOW + 200, NOW + 250))


@pytest.mark.parametrize("name", list(OUTAGES))
async def test_an_outage_answers_none_and_logs_once(
    kube: FakeKubernetes,
    make_replicas: MakeReplicas,
    kube_logs: KubeLogs,
    token_file: Path,
    name: str,
) -> None:
    outage = OUTAGES[name]
    _qwen(kube)
    replicas = make_replicas(timeout_s=0.2)
    assert await replicas.count("vllm-qwen", NOW) == HEALTHY
    outage.start(kube)
    for _ in range(OUTAGE_READS):
        assert await replicas.count("vllm-qwen", NOW) is None
    api = f"http://127.0.0.1:{kube.port}"
    (failing,) = kube_logs()
    assert failing.levelno == logging.ERROR
    assert failing.getMessage() == (
        "kubernetes: cannot read deployment llm/vllm-qwen (scaling on the replicas the signals "
        "see): " + outage.says.format(api=api, token_file=token_file)
    )
    outage.end(kube)
    assert await replicas.count("vllm-qwen", NOW) == HEALTHY
    assert await replicas.count("vllm-qwen", NOW) == HEALTHY
    failing, recovered = kube_logs()
    assert recovered.levelno == logging.WARNING
    assert recovered.getMessage() == (
        f"kubernetes: deployment llm/vllm-qwen read again after {OUTAGE_READS} failed reads"
    )
    assert not any(TOKEN in record.getMessage() for record in kube_logs())


async def test_the_api_server_down_and_back(
    kube: FakeKubernetes, make_replicas: MakeReplicas, kube_logs: KubeLogs
) -> None:
    _qwen(kube)
    replicas = make_replicas()
    await kube.close()
    for _ in range(OUTAGE_READS):
        assert await replicas.count("vllm-qwen", NOW) is None
    (failing,) = kube_logs()
    assert failing.getMessage().startswith(
        "kubernetes: cannot read deployment llm/vllm-qwen (scaling on the replicas the signals "
        f"see): cannot reach http://127.0.0.1:{kube.port}: ClientConnectorError: "
    )
    await kube.start()  # the same port again
    assert await replicas.count("vllm-qwen", NOW) == HEALTHY
    assert len(kube_logs()) == 2


async def test_pods_that_cannot_be_listed_leave_the_counts(
    kube: FakeKubernetes,
    make_replicas: MakeReplicas,
    kube_logs: KubeLogs,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _qwen(kube)
    kube.forbidden.add("pods")
    replicas = make_replicas()
    rbac = (
        "forbidden: RBAC does not let the scaler list pods in namespace llm; its service "
        "account needs get on deployments.apps and list on pods there (a Role and a "
        'RoleBinding); the API server said: pods is forbidden: User "system:serviceaccount:'
        'tiergate:tiergate-scaler" cannot list resource "pods" in API group "" in the '
        'namespace "llm"'
    )
    for _ in range(OUTAGE_READS):
        count = await replicas.count("vllm-qwen", NOW)
        assert count == ReplicaCount(
            ready=1, pending=2, note=f"ready times of 2 pending replicas unknown: {rbac}"
        )
    (failing,) = kube_logs()
    assert failing.getMessage() == (
        "kubernetes: cannot read the pods of deployment llm/vllm-qwen (ready times of pending "
        f"replicas unknown): {rbac}"
    )
    kube.forbidden.discard("pods")
    assert await replicas.count("vllm-qwen", NOW) == HEALTHY
    assert kube_logs()[-1].getMessage() == (
        "kubernetes: the pods of deployment llm/vllm-qwen read again after 3 failed reads"
    )
    assert TOKEN not in caplog.text


async def test_no_token_is_anonymous_and_says_so(
    kube: FakeKubernetes, make_replicas: MakeReplicas, kube_logs: KubeLogs, tmp_path: Path
) -> None:
    """A pod without its service account token (automountServiceAccountToken: false)."""
    _qwen(kube)
    replicas = make_replicas(token_file=None)
    assert await replicas.count("vllm-qwen", NOW) is None
    assert kube.last_authorization is None
    (failing,) = kube_logs()
    assert 'User "system:anonymous" cannot get resource "deployments"' in failing.getMessage()


async def test_an_absent_token_file_is_named(
    kube: FakeKubernetes, make_replicas: MakeReplicas, kube_logs: KubeLogs, tmp_path: Path
) -> None:
    _qwen(kube)
    missing = tmp_path / "tokens" / "scaler"
    assert await make_replicas(token_file=str(missing)).count("vllm-qwen", NOW) is None
    assert kube.seen == []
    (failing,) = kube_logs()
    assert failing.getMessage().endswith(
        f"the token file {missing} is absent: No such file or directory"
    )


async def test_outside_a_cluster_without_an_api_server(
    kube: FakeKubernetes, make_replicas: MakeReplicas, kube_logs: KubeLogs
) -> None:
    replicas = make_replicas(api_server=None)
    assert await replicas.count("vllm-qwen", NOW) is None
    (failing,) = kube_logs()
    assert failing.getMessage().endswith(
        "not in a cluster (KUBERNETES_SERVICE_HOST is unset) and no apiServer is given"
    )


async def test_in_a_cluster_the_service_address_and_its_ca(
    kube: FakeKubernetes,
    make_replicas: MakeReplicas,
    kube_logs: KubeLogs,
    tmp_path: Path,
    token_file: Path,
) -> None:
    """The in-cluster address is https with the service account's CA: an unreadable CA says
    so; a readable one reaches the address (a plain-http fake cannot finish the handshake)."""
    account = tmp_path / "serviceaccount"
    account.mkdir()
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(kube.port)}

    def in_cluster() -> KubernetesReplicas:
        return make_replicas(api_server=None, env=env, secrets=account)

    assert await in_cluster().count("vllm-qwen", NOW) is None
    assert (
        kube_logs()[-1]
        .getMessage()
        .endswith(
            f"cannot use the CA file {account / 'ca.crt'}: [Errno 2] No such file or directory"
        )
    )
    shutil.copy(CA, account / "ca.crt")
    assert await in_cluster().count("vllm-qwen", NOW) is None
    assert f"cannot reach https://127.0.0.1:{kube.port}: " in kube_logs()[-1].getMessage()
    assert kube.seen == []  # no request got through the failed handshake
