"""Active health checks: the up/down policy, and probing a real upstream that misbehaves."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web

from tests.gateway.helpers import serve_app
from tiergate.gateway.health import HealthChecker, HealthState
from tiergate.spec.fleet import HealthProbe

# --- the pure policy ---------------------------------------------------------------------------


def test_starts_up_and_goes_down_after_consecutive_failures() -> None:
    state = HealthState(unhealthy_threshold=3, healthy_threshold=2)
    assert state.up
    assert [state.record(False) for _ in range(3)] == [False, False, True]
    assert not state.up
    assert not state.record(False)  # already down: no change to report


def test_a_success_resets_the_failure_streak() -> None:
    state = HealthState(unhealthy_threshold=3, healthy_threshold=2)
    for ok in (False, False, True, False, False):
        assert not state.record(ok)
    assert state.up
    assert state.record(False)
    assert not state.up


def test_comes_back_up_after_consecutive_successes() -> None:
    state = HealthState(unhealthy_threshold=1, healthy_threshold=2)
    assert state.record(False)
    assert not state.record(True)
    assert not state.up
    assert state.record(True)
    assert state.up


def test_a_failure_resets_the_success_streak() -> None:
    state = HealthState(unhealthy_threshold=1, healthy_threshold=2)
    state.record(False)
    for ok in (True, False, True):
        assert not state.record(ok)
    assert not state.up
    assert state.record(True)
    assert state.up


def test_thresholds_of_one_follow_every_probe() -> None:
    state = HealthState(unhealthy_threshold=1, healthy_threshold=1)
    assert state.record(False)
    assert state.record(True)
    assert state.up


@pytest.mark.parametrize(("unhealthy", "healthy"), [(0, 1), (1, 0)])
def test_thresholds_below_one_are_rejected(unhealthy: int, healthy: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        HealthState(unhealthy, healthy)


# --- probing a real server ---------------------------------------------------------------------


class Upstream:
    """An in-process server whose ``/health`` answers as the test says."""

    def __init__(self) -> None:
        self.mode = "ok"  # ok | fail | slow | flap
        self.hits = 0
        self.release = asyncio.Event()  # lets "slow" requests finish at teardown
        self.url = ""

    async def health(self, request: web.Request) -> web.Response:
        self.hits += 1
        if self.mode == "slow":
            await self.release.wait()
        if self.mode == "fail" or (self.mode == "flap" and self.hits % 2 == 0):
            return web.Response(status=500, text="engine dead")
        return web.Response(text="")


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = Upstream()
    app = web.Application()
    app.router.add_get("/health", server.health)
    runner, origin = await serve_app(app)
    server.url = f"{origin}/health"
    yield server
    server.release.set()
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def probe(url: str, unhealthy: int = 2, healthy: int = 2) -> HealthProbe:
    return HealthProbe(
        url=url,
        interval_s=0.02,
        timeout_s=0.1,
        unhealthy_threshold=unhealthy,
        healthy_threshold=healthy,
    )


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait up to 2 s, polling every 10 ms, for ``condition`` to hold."""
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition did not hold within 2 s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_tier_goes_down_on_errors_and_comes_back(
    upstream: Upstream, session: aiohttp.ClientSession
) -> None:
    changes: list[tuple[str, bool]] = []
    checker = HealthChecker(
        {"vllm": probe(upstream.url)}, session, on_change=lambda t, up: changes.append((t, up))
    )
    await checker.start()
    try:
        await eventually(lambda: upstream.hits >= 3)
        assert checker.is_up("vllm")
        upstream.mode = "fail"
        await eventually(lambda: not checker.is_up("vllm"))
        assert changes == [("vllm", False)]
        upstream.mode = "ok"
        await eventually(lambda: checker.is_up("vllm"))
        assert changes == [("vllm", False), ("vllm", True)]
    finally:
        await checker.stop()


async def test_probe_slower_than_its_timeout_counts_as_failure(
    upstream: Upstream, session: aiohttp.ClientSession
) -> None:
    changes: list[tuple[str, bool]] = []
    checker = HealthChecker(
        {"vllm": probe(upstream.url)}, session, on_change=lambda t, up: changes.append((t, up))
    )
    upstream.mode = "slow"
    await checker.start()
    try:
        await eventually(lambda: not checker.is_up("vllm"))
        upstream.mode = "ok"
        await eventually(lambda: checker.is_up("vllm"))
        assert changes == [("vllm", False), ("vllm", True)]
    finally:
        await checker.stop()


async def test_flapping_below_the_thresholds_keeps_the_tier_up(
    upstream: Upstream, session: aiohttp.ClientSession
) -> None:
    changes: list[tuple[str, bool]] = []
    checker = HealthChecker(
        {"vllm": probe(upstream.url)}, session, on_change=lambda t, up: changes.append((t, up))
    )
    upstream.mode = "flap"
    await checker.start()
    try:
        await eventually(lambda: upstream.hits >= 12)
        assert checker.is_up("vllm")
        assert changes == []
    finally:
        await checker.stop()


async def test_unreachable_upstream_goes_down_and_unprobed_tiers_stay_up(
    session: aiohttp.ClientSession,
) -> None:
    url = f"http://127.0.0.1:{free_port()}/health"
    checker = HealthChecker({"gone": probe(url, unhealthy=1)}, session)
    assert await checker.probe_once("gone") is False
    await checker.start()
    try:
        await eventually(lambda: not checker.is_up("gone"))
        assert checker.is_up("openai")  # no probe configured: always usable
    finally:
        await checker.stop()


async def test_only_http_200_passes_a_probe(
    upstream: Upstream, session: aiohttp.ClientSession
) -> None:
    checker = HealthChecker({"vllm": probe(upstream.url)}, session)
    assert await checker.probe_once("vllm") is True
    upstream.mode = "fail"
    assert await checker.probe_once("vllm") is False


async def test_failing_listener_does_not_stop_the_checks(
    upstream: Upstream, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    def listener(tier: str, up: bool) -> None:
        raise RuntimeError(f"listener broke on {tier} {up}")

    checker = HealthChecker({"vllm": probe(upstream.url, healthy=1)}, session, on_change=listener)
    upstream.mode = "fail"
    await checker.start()
    try:
        await eventually(lambda: not checker.is_up("vllm"))
        upstream.mode = "ok"
        await eventually(lambda: checker.is_up("vllm"))
    finally:
        await checker.stop()
    assert "listener broke on vllm False" in caplog.text
    assert "tier vllm is down" in caplog.text


async def test_stop_ends_probing(upstream: Upstream, session: aiohttp.ClientSession) -> None:
    checker = HealthChecker({"vllm": probe(upstream.url)}, session)
    await checker.start()
    await eventually(lambda: upstream.hits >= 2)
    await checker.stop()
    hits = upstream.hits
    await asyncio.sleep(0.1)  # five probe intervals
    assert upstream.hits == hits
