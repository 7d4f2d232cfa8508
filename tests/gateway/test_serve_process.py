"""``tiergate serve`` as a process: reload on SIGHUP, graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.gateway.helpers import (
    HELLO,
    StartUpstreams,
    eventually,
    fleet_yaml,
    free_port,
    tier,
)
from tests.gateway.upstream import FakeUpstream

CHAT = "/v1/chat/completions"


@dataclass
class ServeProcess:
    proc: asyncio.subprocess.Process
    port: int
    spec: Path
    log: Path
    http: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_spec(self, text: str) -> None:
        self.spec.write_text(text)

    async def chat(self, session: aiohttp.ClientSession | None = None) -> tuple[int, Any]:
        body = {"model": "main", "messages": HELLO}
        async with (session or self.http).post(self.url + CHAT, json=body) as response:
            return response.status, await response.json(content_type=None)

    async def served_by(self) -> str | None:
        status, payload = await self.chat()
        if status != 200:
            return None
        return str(payload["choices"][0]["message"]["content"])

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)


StartServe = Callable[..., Awaitable[ServeProcess]]


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[StartServe]:
    started: list[ServeProcess] = []
    logs: list[Any] = []

    async def start(text: str, *extra_args: str) -> ServeProcess:
        spec = tmp_path / "fleet.yaml"
        spec.write_text(text)
        port = free_port()
        log = tmp_path / "serve.log"
        log_file = log.open("wb")
        logs.append(log_file)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tiergate", "serve", "-c", str(spec),
            "--host", "127.0.0.1", "--port", str(port), *extra_args,
            stdout=log_file, stderr=asyncio.subprocess.STDOUT, env=dict(os.environ),
            start_new_session=True,  # its own process group: --workers children die with it
        )  # fmt: skip
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        handle = ServeProcess(proc, port, spec, log, http)
        started.append(handle)

        async def healthy() -> bool:
            if proc.returncode is not None:
                pytest.fail(f"tiergate serve exited {proc.returncode}:\n{log.read_text()}")
            try:
                async with http.get(handle.url + "/health") as response:
                    return response.status == 200
            except aiohttp.ClientConnectionError:
                return False

        await eventually(healthy, timeout_s=20.0, interval_s=0.05, what="tiergate serve up")
        return handle

    yield start
    for handle in started:
        await handle.http.close()
        # The whole group: SIGKILL of the parent alone would orphan its --workers children.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(handle.proc.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(handle.proc.wait(), 10)
    for log_file in logs:
        log_file.close()


def one_tier(upstream: FakeUpstream) -> str:
    return fleet_yaml([tier("main", upstream)])


async def start_slow_request(
    server: ServeProcess, upstream: FakeUpstream, session: aiohttp.ClientSession
) -> asyncio.Task[tuple[int, Any]]:
    """A request that sits at ``upstream`` for about a second; returns once it is there."""
    upstream.stall_s = 1.0
    task = asyncio.create_task(server.chat(session))
    await eventually(lambda: upstream.active_requests == 1, what="slow request at upstream")
    upstream.stall_s = 0.0  # only that one request is slow
    return task


async def test_sighup_reload_moves_tier_without_dropping_in_flight_request(
    upstreams: StartUpstreams, serve: StartServe
) -> None:
    a, b = await upstreams("a", "b")
    server = await serve(one_tier(a))
    assert await server.served_by() == "from a"

    async with aiohttp.ClientSession() as session:
        slow = await start_slow_request(server, a, session)
        server.write_spec(fleet_yaml([tier("main", b)]))
        server.signal(signal.SIGHUP)

        async def moved() -> bool:
            return await server.served_by() == "from b"

        await eventually(moved, timeout_s=5.0, interval_s=0.05, what="reload to b")
        status, payload = await slow

    assert status == 200
    assert payload["choices"][0]["message"]["content"] == "from a"
    assert server.proc.returncode is None


async def test_sighup_with_invalid_spec_keeps_the_old_one(
    upstreams: StartUpstreams, serve: StartServe
) -> None:
    a, b = await upstreams("a", "b")
    server = await serve(one_tier(a))

    server.write_spec("routing:\n  strategy: random\nmodels: []\n")
    server.signal(signal.SIGHUP)
    for _ in range(6):
        await asyncio.sleep(0.05)
        assert await server.served_by() == "from a"
        assert server.proc.returncode is None

    # Still reloading: a valid spec afterwards is taken.
    server.write_spec(fleet_yaml([tier("main", b)]))
    server.signal(signal.SIGHUP)

    async def moved() -> bool:
        return await server.served_by() == "from b"

    await eventually(moved, timeout_s=5.0, interval_s=0.05, what="reload to b")


async def test_sighup_with_a_billion_laughs_is_rejected_at_once(
    upstreams: StartUpstreams, serve: StartServe
) -> None:
    a, b = await upstreams("a", "b")
    server = await serve(one_tier(a))

    # 9 levels of 9 aliases each: 387 million strings (gigabytes) if aliases were unbounded.
    laughs = ['lol0: &lol0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    laughs += [f"lol{n}: &lol{n} [" + ",".join([f"*lol{n - 1}"] * 9) + "]" for n in range(1, 9)]
    server.write_spec("\n".join(laughs) + "\n" + fleet_yaml([tier("main", b)]))
    server.signal(signal.SIGHUP)

    def rejected() -> bool:
        return "aliases expand to more than 10,000 values" in server.log.read_text()

    await eventually(rejected, timeout_s=10.0, interval_s=0.05, what="reload rejected")
    assert "reload rejected, still serving the previous fleet" in server.log.read_text()
    assert await server.served_by() == "from a"
    assert server.proc.returncode is None


async def refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    await writer.wait_closed()
    return False


async def test_sigterm_drains_in_flight_request_then_exits_zero(
    upstreams: StartUpstreams, serve: StartServe
) -> None:
    (a,) = await upstreams("a")
    server = await serve(one_tier(a))

    async with aiohttp.ClientSession() as session:
        slow = await start_slow_request(server, a, session)
        server.signal(signal.SIGTERM)

        refused_while_draining = False
        for _ in range(100):
            if slow.done():
                break
            if await refused(server.port):
                refused_while_draining = not slow.done()
                break
            await asyncio.sleep(0.01)
        status, payload = await slow

    assert refused_while_draining, "new connections were still accepted during the drain"
    assert status == 200
    assert payload["choices"][0]["message"]["content"] == "from a"
    assert await asyncio.wait_for(server.proc.wait(), 10) == 0


async def test_workers_share_the_port_and_report_metrics_of_all_workers(
    upstreams: StartUpstreams, serve: StartServe
) -> None:
    (a,) = await upstreams("a")
    server = await serve(one_tier(a), "--workers", "2")
    requests = 30
    for _ in range(requests):
        # A new connection each time, so that the kernel spreads them over the workers.
        async with aiohttp.ClientSession() as session:
            status, _ = await server.chat(session)
            assert status == 200
    served = set()
    for _ in range(6):
        async with aiohttp.ClientSession() as session, session.get(server.url + "/metrics") as r:
            text = await r.text()
        totals = [
            float(line.rpartition(" ")[2])
            for line in text.splitlines()
            if line.startswith("tiergate_requests_total{")
        ]
        # Whichever worker answers the scrape, it reports the requests of both.
        assert sum(totals) == requests
        served.add(text.count("tiergate_requests_total{"))
    assert served == {1}
