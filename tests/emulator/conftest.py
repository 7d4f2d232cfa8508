"""Fixtures of the emulator tests: running clusters and clients pointed at them.

- ``emulate(replicas=1, **config)`` starts an :class:`EmulatorCluster` of Llama-3.1-8B on an
  H100 (``config`` overrides any :class:`EmulatorConfig` field; ``speed`` defaults to 200 and
  ``lag_tolerance_s`` to 1e6) and returns a :class:`Running` handle with an ``AsyncOpenAI``
  client per replica and an aiohttp session; everything is closed when the test ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import openai
import pytest

from tests.emulator.helpers import metric
from tiergate.emulator import EmulatorCluster, EmulatorConfig

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


@dataclass
class Running:
    """A cluster under test, with clients."""

    cluster: EmulatorCluster
    clients: list[openai.AsyncOpenAI]
    http: aiohttp.ClientSession

    @property
    def origin(self) -> str:
        return self.cluster.origins[0]

    @property
    def client(self) -> openai.AsyncOpenAI:
        return self.clients[0]

    async def metrics(self, replica: int = 0) -> str:
        async with self.http.get(self.cluster.origins[replica] + "/metrics") as response:
            assert response.status == 200
            return await response.text()

    async def metric(self, name: str, replica: int = 0, **labels: str) -> float:
        return metric(await self.metrics(replica), name, **labels)

    async def post(
        self, path: str, body: Any = None, replica: int = 0, **kwargs: Any
    ) -> tuple[int, Any]:
        """POST JSON to a replica: (status, decoded JSON body or text)."""
        url = self.cluster.origins[replica] + path
        async with self.http.post(url, json=body, **kwargs) as response:
            text = await response.text()
            try:
                return response.status, await response.json(content_type=None)
            except ValueError:
                return response.status, text

    async def get(self, path: str, replica: int = 0) -> tuple[int, str]:
        async with self.http.get(self.cluster.origins[replica] + path) as response:
            return response.status, await response.text()

    async def chat(
        self, replica: int = 0, headers: dict[str, str] | None = None, **body: Any
    ) -> tuple[int, Any]:
        """A raw non-streaming chat request (``max_tokens`` 8 unless given)."""
        payload = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "hello"}],
            "max_tokens": 8,
        }
        return await self.post(
            "/v1/chat/completions", {**payload, **body}, replica, headers=headers
        )


Emulate = Callable[..., Awaitable[Running]]


@pytest.fixture
async def emulate() -> AsyncIterator[Emulate]:
    started: list[Running] = []

    async def start(replicas: int = 1, **overrides: Any) -> Running:
        # Engine time pinned to the model's (no catching up with the wall clock): latencies in
        # the metrics do not depend on how loaded this machine is.
        defaults = {"model": MODEL, "gpu": "H100", "speed": 200.0, "lag_tolerance_s": 1e6}
        config = EmulatorConfig(**{**defaults, **overrides})
        cluster = await EmulatorCluster(config, replicas).start()
        clients = [
            openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0, timeout=10)
            for url in cluster.urls
        ]
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        running = Running(cluster, clients, http)
        started.append(running)
        return running

    yield start
    for running in started:
        for client in running.clients:
            await client.close()
        await running.http.close()
        await running.cluster.close()
