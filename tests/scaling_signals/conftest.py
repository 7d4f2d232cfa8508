"""Fixtures of the signal tests: an aiohttp session, and real Prometheus servers.

``prometheus_for(targets)`` starts the Debian ``prometheus`` binary (``tests/prometheus.py``) on
a free port of 127.0.0.1, scraping each target (``host:port`` -> labels to attach) every second,
and returns its URL once ``/-/ready`` answers; it is stopped when the test ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path

import aiohttp
import pytest

from tests.prometheus import PrometheusServer, prometheus_binary, start_prometheus

StartPrometheus = Callable[[Mapping[str, Mapping[str, str]]], Awaitable[str]]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


@pytest.fixture
async def prometheus_for(tmp_path: Path) -> AsyncIterator[StartPrometheus]:
    prometheus_binary()  # skip (fail under CI) before the test starts anything
    servers: list[PrometheusServer] = []

    async def start(targets: Mapping[str, Mapping[str, str]]) -> str:
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {
                    "job_name": "vllm",
                    "static_configs": [
                        {"targets": [target], "labels": dict(labels)}
                        for target, labels in targets.items()
                    ],
                }
            ],
        }
        server = await start_prometheus(config, tmp_path / f"prometheus-{len(servers)}")
        servers.append(server)
        return server.url

    try:
        yield start
    finally:
        for server in servers:
            await server.stop()
