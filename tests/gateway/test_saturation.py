"""Spillover signals: parsing vLLM's /metrics, the saturation policy, and live scraping."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web

from tests.gateway.helpers import serve_app
from tiergate.gateway.saturation import (
    EngineSample,
    SaturationMonitor,
    is_saturated,
)
from tiergate.spec.fleet import SpilloverLimits
from tiergate.telemetry.vllm_page import parse_vllm_load

# Trimmed from a vLLM V1 server hosting two engines; the gauges sit between histograms and
# counters whose names share the "vllm:" prefix.
VLLM_METRICS = """\
# HELP python_gc_objects_collected_total Objects collected during gc
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{generation="0"} 12890.0
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="Qwen/Qwen3-32B"} 48.0
vllm:num_requests_running{engine="1",model_name="Qwen/Qwen3-32B"} 51.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="Qwen/Qwen3-32B"} 7.0
vllm:num_requests_waiting{engine="1",model_name="Qwen/Qwen3-32B"} 3.0
# HELP vllm:num_requests_waiting_by_reason Waiting requests, by reason.
# TYPE vllm:num_requests_waiting_by_reason gauge
vllm:num_requests_waiting_by_reason{engine="0",model_name="Qwen/Qwen3-32B",reason="capacity"} 99.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="Qwen/Qwen3-32B"} 0.9
vllm:kv_cache_usage_perc{engine="1",model_name="Qwen/Qwen3-32B"} 0.7
# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="Qwen/Qwen3-32B"} 1.2e+07
vllm:prefix_cache_queries_created{engine="0",model_name="Qwen/Qwen3-32B"} 1.7e+09
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.001",model_name="Qwen/Qwen3-32B"} 0.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="Qwen/Qwen3-32B"} 4200.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="Qwen/Qwen3-32B"} 4200.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="Qwen/Qwen3-32B"} 1234.5
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage (deprecated).
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{engine="0",model_name="Qwen/Qwen3-32B"} 0.1
"""

LEGACY_METRICS = """\
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="meta-llama/Llama-3.1-8B-Instruct"} 2.0
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.25
"""


def test_sums_waiting_and_averages_kv_usage_over_engines() -> None:
    assert parse_vllm_load(VLLM_METRICS) == (10.0, pytest.approx(0.8))


def test_falls_back_to_the_legacy_kv_usage_name() -> None:
    assert parse_vllm_load(LEGACY_METRICS) == (2.0, 0.25)


def test_absent_metrics_give_none() -> None:
    text = "# HELP up Whether up.\n# TYPE up gauge\nup 1\nvllm:num_requests_running 4\n"
    assert parse_vllm_load(text) == (None, None)
    assert parse_vllm_load("") == (None, None)


def test_nan_series_are_left_out() -> None:
    text = (
        'vllm:num_requests_waiting{engine="0"} NaN\n'
        'vllm:num_requests_waiting{engine="1"} 4\n'
        'vllm:kv_cache_usage_perc{engine="0"} NaN\n'
        'vllm:gpu_cache_usage_perc{engine="0"} 0.5\n'
    )
    # Only-NaN kv_cache_usage_perc counts as absent, so the legacy gauge is used.
    assert parse_vllm_load(text) == (4.0, 0.5)
    assert parse_vllm_load("vllm:num_requests_waiting NaN\n") == (None, None)


def test_odd_label_values_timestamps_and_line_endings() -> None:
    text = (
        'vllm:num_requests_waiting{model_name="a, b} c",engine="say \\"hi\\""} 5 1700000000000\r\n'
        "vllm:num_requests_waiting 1\r\n"
        "vllm:num_requests_waiting\t2.5e0\n"
        'vllm:kv_cache_usage_perc{model_name="x y"} +Inf\n'
        "vllm:num_requests_waiting{} not-a-number\n"
    )
    waiting, kv_usage = parse_vllm_load(text)
    assert waiting == 8.5
    assert kv_usage is not None
    assert math.isinf(kv_usage)


@pytest.mark.parametrize(
    ("waiting", "kv_usage", "expected"),
    [
        ((4.0, 6.0), (0.1, 0.1), True),  # mean waiting 5 reaches max_waiting 5
        ((4.0, 5.9), (0.1, 0.1), False),
        ((0.0, 0.0), (0.8, 0.9), False),  # mean 0.85 < 0.9
        ((0.0, 0.0), (0.9, 0.9), True),
    ],
)
def test_saturated_at_the_limits(
    waiting: tuple[float, float], kv_usage: tuple[float, float], expected: bool
) -> None:
    limits = limits_for(max_waiting=5.0, max_kv_cache_usage=0.9)
    samples = [EngineSample(w, kv, at=100.0) for w, kv in zip(waiting, kv_usage, strict=True)]
    assert is_saturated(samples, limits, now=100.0) is expected


def test_unset_limits_never_saturate() -> None:
    samples = [EngineSample(waiting=1e6, kv_usage=0.6, at=0.0)]
    assert not is_saturated(samples, limits_for(max_waiting=None, max_kv_cache_usage=0.99), 0.0)
    assert is_saturated(samples, limits_for(max_waiting=None, max_kv_cache_usage=0.5), 0.0)
    assert not is_saturated(samples, limits_for(max_waiting=1e7, max_kv_cache_usage=None), 0.0)


def test_stale_samples_are_ignored() -> None:
    limits = limits_for(max_waiting=5.0, stale_after_s=5.0)
    busy = EngineSample(waiting=50.0, kv_usage=None, at=10.0)
    idle = EngineSample(waiting=0.0, kv_usage=None, at=14.0)
    assert is_saturated([busy, idle], limits, now=15.0)  # exactly stale_after_s old: still fresh
    assert not is_saturated([busy, idle], limits, now=15.001)
    assert not is_saturated([busy], limits, now=15.001)  # nothing fresh: no spillover


def test_engines_without_a_value_do_not_dilute_the_mean() -> None:
    limits = limits_for(max_waiting=5.0)
    samples = [EngineSample(8.0, None, at=1.0), EngineSample(None, 0.2, at=1.0)]
    assert is_saturated(samples, limits, now=1.0)
    assert not is_saturated([EngineSample(None, None, at=1.0)], limits, now=1.0)


# --- scraping real servers -----------------------------------------------------------------------


def limits_for(
    max_waiting: float | None = 5.0,
    max_kv_cache_usage: float | None = None,
    stale_after_s: float = 10.0,
    urls: tuple[str, ...] = (),
) -> SpilloverLimits:
    return SpilloverLimits(
        metrics_urls=urls,
        max_waiting=max_waiting,
        max_kv_cache_usage=max_kv_cache_usage,
        scrape_interval_s=0.05,
        stale_after_s=stale_after_s,
    )


class Engines:
    """Two vLLM-like engines behind one in-process server, at /e0/metrics and /e1/metrics."""

    def __init__(self) -> None:
        self.waiting = {"e0": 0.0, "e1": 0.0}
        self.kv_usage = {"e0": 0.1, "e1": 0.1}
        self.down: set[str] = set()
        self.hits = {"e0": 0, "e1": 0}
        self.urls: tuple[str, ...] = ()

    async def metrics(self, request: web.Request) -> web.Response:
        engine = request.match_info["engine"]
        self.hits[engine] += 1
        if engine in self.down:
            return web.Response(status=503)
        text = (
            "# TYPE vllm:num_requests_waiting gauge\n"
            f'vllm:num_requests_waiting{{engine="0",model_name="m"}} {self.waiting[engine]}\n'
            "# TYPE vllm:kv_cache_usage_perc gauge\n"
            f'vllm:kv_cache_usage_perc{{engine="0",model_name="m"}} {self.kv_usage[engine]}\n'
        )
        return web.Response(text=text, content_type="text/plain")


@pytest.fixture
async def engines() -> AsyncIterator[Engines]:
    server = Engines()
    app = web.Application()
    app.router.add_get("/{engine:e[01]}/metrics", server.metrics)
    runner, base = await serve_app(app)
    server.urls = (f"{base}/e0/metrics", f"{base}/e1/metrics")
    yield server
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait up to 2 s, polling every 10 ms, for ``condition`` to hold."""
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition did not hold within 2 s")


async def test_saturation_follows_the_engines_queues(
    engines: Engines, session: aiohttp.ClientSession
) -> None:
    changes: list[tuple[str, bool]] = []
    limits = limits_for(max_waiting=5.0, max_kv_cache_usage=0.9, urls=engines.urls)
    monitor = SaturationMonitor(
        {"vllm": limits}, session, on_change=lambda t, s: changes.append((t, s))
    )
    await monitor.start()
    try:
        await eventually(lambda: min(engines.hits.values()) >= 2)
        assert not monitor.saturated("vllm")
        engines.waiting["e0"] = 12.0  # mean over the two engines: 6
        await eventually(lambda: monitor.saturated("vllm"))
        engines.waiting["e0"] = 2.0
        await eventually(lambda: not monitor.saturated("vllm"))
        engines.kv_usage.update(e0=0.9, e1=0.95)
        await eventually(lambda: monitor.saturated("vllm"))
        assert changes == [("vllm", True), ("vllm", False), ("vllm", True)]
        assert not monitor.saturated("openai")  # no spillover limits
    finally:
        await monitor.stop()


async def test_a_failing_engine_counts_until_its_last_sample_goes_stale(
    engines: Engines, session: aiohttp.ClientSession
) -> None:
    clock = Clock()
    changes: list[tuple[str, bool]] = []
    limits = limits_for(max_waiting=5.0, stale_after_s=10.0, urls=engines.urls)
    monitor = SaturationMonitor(
        {"vllm": limits}, session, clock=clock, on_change=lambda t, s: changes.append((t, s))
    )
    engines.waiting["e0"] = 20.0
    await monitor.start()
    try:
        await eventually(lambda: monitor.saturated("vllm"))
        engines.down.add("e0")
        failed_from = engines.hits["e0"]
        await eventually(lambda: engines.hits["e0"] >= failed_from + 2)
        assert monitor.saturated("vllm")  # its last sample (waiting 20) is still fresh
        clock.now += 11.0
        await eventually(lambda: not monitor.saturated("vllm"))  # only e1, idle, is fresh
        assert changes == [("vllm", True), ("vllm", False)]
    finally:
        await monitor.stop()


async def test_scrape_round_with_every_engine_down_does_not_saturate(
    engines: Engines, session: aiohttp.ClientSession
) -> None:
    engines.down.update(("e0", "e1"))
    limits = limits_for(max_waiting=0.0, urls=engines.urls)
    monitor = SaturationMonitor({"vllm": limits}, session)
    assert await monitor.scrape_round("vllm") is False
    assert engines.hits == {"e0": 1, "e1": 1}
    engines.down.clear()
    assert await monitor.scrape_round("vllm") is True
    assert monitor.saturated("vllm")
