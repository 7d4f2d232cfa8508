"""Fixtures of the end-to-end tests: ``tiergate serve`` as real processes on loopback.

- ``serve(spec, name)`` starts ``python -m tiergate serve -c SPEC`` (this interpreter, so the
  repository's venv) on a free port of 127.0.0.1 and returns once ``/health`` answers; each
  process writes to ``NAME.log`` in the test's directory. Whatever is still running when the
  test ends is killed.
- When a test fails, the logs of the processes it started are appended to its report.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.polling import eventually
from tests.services import free_port

STARTUP_S = 20.0
STOP_S = 15.0
LOGS = pytest.StashKey[list[Path]]()


@dataclass
class ServeProcess:
    """One running ``tiergate serve``."""

    name: str
    proc: asyncio.subprocess.Process
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self, sig: int = signal.SIGTERM, timeout_s: float = STOP_S) -> int:
        """Send ``sig`` and wait (bounded) for the process to exit; its exit status.

        Signal a process once only: after it has died, ``send_signal`` (``Popen.poll``) would
        reap it before asyncio's child watcher, which then reports 255 instead of its status.
        """
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
        return await self.wait(timeout_s)

    async def wait(self, timeout_s: float = STOP_S) -> int:
        """Wait (bounded) for the process to exit; its exit status."""
        async with asyncio.timeout(timeout_s):
            return await self.proc.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


StartServe = Callable[[Path, str], Awaitable[ServeProcess]]


@pytest.fixture
async def serve(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StartServe]:
    started: list[ServeProcess] = []
    logs = request.node.stash.setdefault(LOGS, [])

    async def start(spec: Path, name: str) -> ServeProcess:
        port = free_port()
        log = tmp_path / f"{name}.log"
        logs.append(log)
        with log.open("wb") as out:  # the child keeps its own descriptor
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tiergate", "serve", "-c", str(spec),
                "--host", "127.0.0.1", "--port", str(port),
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT,
                env=dict(os.environ),
            )  # fmt: skip
        handle = ServeProcess(name, proc, port, log)
        started.append(handle)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:

            async def healthy() -> bool:
                if proc.returncode is not None:
                    pytest.fail(f"tiergate serve {name} exited {proc.returncode}")
                try:
                    async with http.get(handle.url + "/health") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await eventually(healthy, timeout_s=STARTUP_S, interval_s=0.05, what=f"{name} up")
        return handle

    try:
        yield start
    finally:
        for handle in started:
            if handle.proc.returncode is None:
                handle.proc.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(handle.proc.wait(), STOP_S)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for log in item.stash.get(LOGS, []):
            try:
                text = log.read_text(errors="replace")
            except OSError as exc:
                text = f"(unreadable: {exc})"
            report.sections.append((f"tiergate serve log {log.name}", text[-20_000:]))
    return report
