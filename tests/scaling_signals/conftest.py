"""Fixtures of the signal tests: an aiohttp session, and real Prometheus servers.

``prometheus_for(targets)`` starts the Debian ``prometheus`` binary on a free port of
127.0.0.1, scraping each target (``host:port`` -> labels to attach) every second, and returns
its URL once ``/-/ready`` answers; it is stopped when the test ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.polling import eventually
from tests.services import free_port, missing

INSTALL = "apt-get update && apt-get install -y prometheus"

StartPrometheus = Callable[[Mapping[str, Mapping[str, str]]], Awaitable[str]]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


@pytest.fixture
async def prometheus_for(
    tmp_path: Path, http: aiohttp.ClientSession
) -> AsyncIterator[StartPrometheus]:
    binary = shutil.which("prometheus")
    if binary is None:
        missing(f"the prometheus binary is missing; install it with: {INSTALL}")
    processes: list[asyncio.subprocess.Process] = []

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
        path = tmp_path / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        port = free_port()
        with (tmp_path / "prometheus.log").open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                binary,
                f"--config.file={path}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        processes.append(process)
        url = f"http://127.0.0.1:{port}"

        async def ready() -> bool:
            if process.returncode is not None:
                log_tail = (tmp_path / "prometheus.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"prometheus exited with {process.returncode}:\n{log_tail}")
            try:
                async with http.get(f"{url}/-/ready") as response:
                    return response.status == 200
            except aiohttp.ClientConnectionError:
                return False  # not listening yet

        await eventually(ready, timeout_s=30.0, interval_s=0.1, what="prometheus ready")
        return url

    yield start
    for process in processes:
        if process.returncode is None:
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=10.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
