"""A real Prometheus scrapes two emulated replicas; the PromQL the monitor and the scaler use
gives figures consistent with the load the test generates."""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from tests.emulator.conftest import Emulate, Running
from tests.polling import eventually
from tiergate.emulator import SchedulerLimits

INSTALL = "apt-get update && apt-get install -y prometheus"
CLIENTS_PER_REPLICA = 12
MAX_NUM_SEQS = 4
WAITING = "sum(vllm:num_requests_waiting)"
TTFT_P95 = (
    "histogram_quantile(0.95, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket[1m])))"
)
KV_USAGE = "avg(vllm:kv_cache_usage_perc)"
UP = 'count(up{job="emulator"} == 1)'

StartPrometheus = Callable[[list[str]], Awaitable[str]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def prometheus_for(tmp_path: Path) -> AsyncIterator[StartPrometheus]:
    binary = shutil.which("prometheus")
    if binary is None:
        message = f"the prometheus binary is missing; install it with: {INSTALL}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    processes: list[asyncio.subprocess.Process] = []

    async def start(targets: list[str]) -> str:
        config = tmp_path / "prom.yml"
        listed = ", ".join(f'"{t}"' for t in targets)
        config.write_text(
            f"global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: emulator\n    static_configs:\n      - targets: [{listed}]\n"
        )
        port = free_port()
        log = (tmp_path / "prometheus.log").open("wb")
        process = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
        log.close()
        processes.append(process)
        return f"http://127.0.0.1:{port}"

    yield start
    for process in processes:
        process.terminate()
        await process.wait()


async def query(http: aiohttp.ClientSession, prometheus: str, promql: str) -> float | None:
    """The single value of an instant query, or None while it has no result."""
    try:
        async with http.get(f"{prometheus}/api/v1/query", params={"query": promql}) as response:
            payload = await response.json()
    except aiohttp.ClientConnectionError:
        return None  # not listening yet
    result = payload["data"]["result"]
    if not result:
        return None
    value = float(result[0]["value"][1])
    return None if math.isnan(value) else value


async def closed_loop(running: Running, replica: int) -> None:
    """One client sending requests back to back until cancelled."""
    headers = {"x-emulator-prompt-tokens": "100"}
    while True:
        status, _ = await running.chat(replica, headers=headers, max_tokens=50)
        assert status == 200


async def test_promql_over_scraped_replicas_matches_the_load(
    emulate: Emulate, prometheus_for: StartPrometheus
) -> None:
    running = await emulate(
        replicas=2,
        speed=2.0,
        kv_capacity_tokens=4096,
        limits=SchedulerLimits(max_num_seqs=MAX_NUM_SEQS),
    )
    targets = [origin.removeprefix("http://") for origin in running.cluster.origins]
    prometheus = await prometheus_for(targets)
    clients = [
        asyncio.create_task(closed_loop(running, replica))
        for replica in (0, 1)
        for _ in range(CLIENTS_PER_REPLICA)
    ]
    figures: dict[str, float] = {}
    try:

        async def all_answer() -> bool:
            for promql in (WAITING, TTFT_P95, KV_USAGE, UP):
                value = await query(running.http, prometheus, promql)
                if value is None:
                    return False
                figures[promql] = value
            # Two scrapes of each replica under load, so that rate() has something to work on.
            return figures[UP] == 2 and figures[WAITING] > 0

        await eventually(
            all_answer, timeout_s=15.0, interval_s=0.5, what="PromQL answers under load"
        )
    finally:
        for client in clients:
            client.cancel()
        await asyncio.wait(clients)
    # Closed loops: 12 clients per replica, 4 running at a time, so at most 8 waiting each.
    assert 0 < figures[WAITING] <= 2 * (CLIENTS_PER_REPLICA - MAX_NUM_SEQS)
    # Each request queues behind about two others of 50 tokens (a few tenths of a model second
    # each): the 95th percentile of TTFT is well above a bare prefill and within minutes.
    assert 0.05 < figures[TTFT_P95] < 60
    # 4 sequences of at most 150 tokens each in a 4096-token cache.
    assert 0 < figures[KV_USAGE] <= 4 * 160 / 4096
