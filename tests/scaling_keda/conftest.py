"""Fixtures of the KEDA scaler tests: a served scaler on 127.0.0.1 and KEDA's client of it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from tests.scaling_keda.keda_client import Fleet, KedaClient
from tiergate.scaling.keda import ScalerServer, serve

PUSH_INTERVAL_S = 0.05
# Loopback only: a proxy from the environment must not see these calls.
CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0)]


@pytest.fixture
def fleet() -> Fleet:
    return Fleet()


@pytest.fixture
async def scaler(fleet: Fleet) -> AsyncIterator[ScalerServer]:
    server = await serve(
        fleet.decide, "127.0.0.1", 0, push_interval_s=PUSH_INTERVAL_S, decide_timeout_s=0.5
    )
    yield server
    await server.close(grace_s=1.0)


@pytest.fixture
async def keda(scaler: ScalerServer) -> AsyncIterator[KedaClient]:
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{scaler.port}", options=CHANNEL_OPTIONS
    ) as channel:
        yield KedaClient(channel)
