"""Fixtures of the Kubernetes replica source tests: a fake API server on 127.0.0.1, a token
file, and a source pointed at them whose clocks are fixed."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.scaling_kube.fake_kube import FakeKubernetes
from tiergate.scaling.kubernetes import ClusterAccess, DeploymentRef, KubernetesReplicas

# Two service-account tokens of the same length: a rotation changes neither size nor shape.
TOKEN = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJzY2FsZXIifQ.c2lnbmF0dXJlLW9uZQ"
ROTATED = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJzY2FsZXIifQ.c2lnbmF0dXJlLXR3bw"
WALL = 1_750_000_000.0  # the API's clock (epoch seconds) at the tests' instant
NOW = 5_000.0  # the caller's clock (time.monotonic) at the same instant
COLD_START_S = 300.0
NAMESPACE = "llm"
LABELS = {"app.kubernetes.io/name": "vllm-qwen"}
LOGGER = "tiergate.scaling.kubernetes"

MakeReplicas = Callable[..., KubernetesReplicas]


@pytest.fixture
async def kube() -> AsyncIterator[FakeKubernetes]:
    async with FakeKubernetes(token=TOKEN) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def make_replicas(
    kube: FakeKubernetes, session: aiohttp.ClientSession, token_file: Path, tmp_path: Path
) -> MakeReplicas:
    """A source for ``vllm-qwen`` in ``llm`` on the fake, with its token file; keyword
    arguments replace the access fields, the deployment or the source's own arguments."""

    def make(**overrides: Any) -> KubernetesReplicas:
        access = ClusterAccess(
            api_server=overrides.pop("api_server", f"http://127.0.0.1:{kube.port}"),
            token_file=overrides.pop("token_file", str(token_file)),
            ca_file=overrides.pop("ca_file", None),
        )
        ref = overrides.pop("ref", DeploymentRef("vllm-qwen", NAMESPACE, COLD_START_S))
        overrides.setdefault("secrets", tmp_path / "no-service-account")
        overrides.setdefault("wall", lambda: WALL)
        overrides.setdefault("env", {})
        return KubernetesReplicas(session, {"vllm-qwen": ref}, access, **overrides)

    return make


@pytest.fixture
def kube_logs(caplog: pytest.LogCaptureFixture) -> Callable[[], list[logging.LogRecord]]:
    """The source's log records so far."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    return lambda: [record for record in caplog.records if record.name == LOGGER]
