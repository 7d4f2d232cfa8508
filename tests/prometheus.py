"""A real Prometheus for the tests: the Debian ``prometheus`` binary on a free port of 127.0.0.1.

``start_prometheus(config, directory)`` writes ``config`` (what ``prometheus.yml`` holds, as a
mapping) into ``directory``, starts the binary with its TSDB and its log there, and returns once
``/-/ready`` answers (bounded); ``PrometheusServer.stop`` terminates it, SIGKILL after a bound.
``running_prometheus`` does both around a block. Without the binary the test is skipped (failed
under ``CI``) by ``missing``, with the apt command that installs it.

``write_file_sd`` replaces a ``file_sd_configs`` targets file atomically: Prometheus watches the
file and must never read it half written.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from tests.polling import eventually
from tests.services import free_port, missing

INSTALL = "apt-get update && apt-get install -y prometheus"
STARTUP_S = 30.0
STOP_S = 10.0

# One target group of a file_sd targets file: {"targets": ["host:port", ...], "labels": {...}}.
TargetGroup = Mapping[str, Any]


def prometheus_binary() -> str:
    """The path of the ``prometheus`` binary, or ``missing`` (skip; fail under CI)."""
    binary = shutil.which("prometheus")
    if binary is None:
        missing(f"the prometheus binary is missing; install it with: {INSTALL}")
    return binary


@dataclass
class PrometheusServer:
    """One running Prometheus; its API at ``url``."""

    url: str
    process: asyncio.subprocess.Process
    log: Path

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError as exc:
            return f"(no log: {exc})"

    async def stop(self, timeout_s: float = STOP_S) -> None:
        """SIGTERM, then SIGKILL if it is still there after ``timeout_s``; reaped either way."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await asyncio.wait_for(self.process.wait(), timeout_s)


async def start_prometheus(
    config: Mapping[str, Any], directory: Path, *, timeout_s: float = STARTUP_S
) -> PrometheusServer:
    """Prometheus with ``config`` on a free port of 127.0.0.1, its files in ``directory``;
    returned once ready. The test fails if it exits or is not ready within ``timeout_s``."""
    binary = prometheus_binary()
    path = _write_config(config, directory)
    port = free_port()
    log = directory / "prometheus.log"
    with log.open("wb") as out:  # the child keeps its own descriptor
        process = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={path}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    server = PrometheusServer(f"http://127.0.0.1:{port}", process, log)
    try:
        await _wait_ready(server, timeout_s)
    except BaseException:
        await server.stop()
        raise
    return server


@contextlib.asynccontextmanager
async def running_prometheus(
    config: Mapping[str, Any], directory: Path
) -> AsyncIterator[PrometheusServer]:
    """``start_prometheus`` for the block; stopped when it ends."""
    server = await start_prometheus(config, directory)
    try:
        yield server
    finally:
        await server.stop()


def write_file_sd(path: Path, groups: Sequence[TargetGroup]) -> None:
    """Replace the targets file at ``path`` at once (a temporary file renamed over it)."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(orjson.dumps(list(groups)))
    os.replace(temporary, path)


def _write_config(config: Mapping[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(dict(config)))
    return path


async def _wait_ready(server: PrometheusServer, timeout_s: float) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:

        async def ready() -> bool:
            if server.process.returncode is not None:
                pytest.fail(
                    f"prometheus exited with {server.process.returncode}:\n{server.log_tail()}"
                )
            try:
                async with http.get(f"{server.url}/-/ready") as response:
                    return response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                return False  # not listening yet

        await eventually(ready, timeout_s=timeout_s, interval_s=0.1, what="prometheus ready")
