"""ScrapeSignals against engine servers whose /metrics the test sets between reads: rates and
quantiles from the growth between scrapes, restarts, unreachable and changing replicas."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest

from tests.scaling_signals.pages import Engine, MetricsServer, vllm_page
from tests.services import free_port
from tiergate.scaling.signals import ScrapeSignals, parse_engine_page
from tiergate.scaling.snapshot import ReplicaSignals, Role, Snapshot

INF = math.inf


@pytest.fixture
async def engines() -> AsyncIterator[list[MetricsServer]]:
    servers = [await MetricsServer().start() for _ in range(3)]
    yield servers
    for server in servers:
        await server.close()


def serve(server: MetricsServer, **values: Any) -> None:
    server.page = vllm_page([Engine(**values)])


IDLE_QUANTILES = (
    "ttft_p95_s: nothing observed in the window (unknown, not 0)",
    "itl_p95_s: nothing observed in the window (unknown, not 0)",
)


def unknown_rates() -> tuple[str, ...]:
    return (
        "request_rate: unknown (no replica with vllm:request_success_total in a window)",
        "prompt_token_rate: unknown (no replica with vllm:prompt_tokens_total in a window)",
        "generation_token_rate: unknown (no replica with vllm:generation_tokens_total in a window)",
        "ttft_p95_s: unknown (no replica with vllm:time_to_first_token_seconds in a window)",
        "itl_p95_s: unknown (no replica with vllm:inter_token_latency_seconds in a window)",
    )


async def read(signals: ScrapeSignals, now: float, ready: int = 2) -> Snapshot:
    return await signals.read("decode", Role.DECODE, ready=ready, now=now)


async def test_rates_and_quantiles_from_two_scrapes(
    engines: list[MetricsServer], http: aiohttp.ClientSession
) -> None:
    r0, r1, _ = engines
    signals = ScrapeSignals([r0.url, r1.url], http, window_s=30.0)
    serve(
        r0,
        kv_usage=0.5,
        waiting=2,
        running=4,
        success={"stop": 10},
        prompt_tokens=1000,
        generation_tokens=200,
        ttft={0.1: 5, 0.5: 10, INF: 10},
        itl={0.05: 100, 0.1: 150, INF: 160},
    )
    serve(r1, kv_usage=0.25, running=1, success={"stop": 0}, ttft={0.1: 0, 0.5: 0, INF: 0})
    first = await read(signals, now=100.0)
    assert first.replicas == (
        ReplicaSignals(kv_usage=0.5, waiting=2, running=4, name=r0.url),
        ReplicaSignals(kv_usage=0.25, waiting=0, running=1, name=r1.url),
    )
    assert (first.request_rate, first.ttft_p95_s) == (None, None)
    assert first.notes == (
        f"{r0.url}: first scrape, its rates count from the next read",
        f"{r1.url}: first scrape, its rates count from the next read",
        *unknown_rates(),
    )

    # Ten seconds later: r0 finished 40 more requests (a finish reason appears), r1 ten.
    serve(
        r0,
        kv_usage=0.75,
        waiting=3,
        running=4,
        success={"stop": 40, "length": 10},
        prompt_tokens=4000,
        generation_tokens=1200,
        ttft={0.1: 105, 0.5: 210, INF: 210},
        itl={0.05: 1000, 0.1: 1150, INF: 1160},
    )
    serve(
        r1,
        kv_usage=0.25,
        running=1,
        success={"stop": 10},
        prompt_tokens=1000,
        generation_tokens=500,
        ttft={0.1: 100, 0.5: 200, INF: 200},
    )
    second = await read(signals, now=110.0)
    assert second.notes == ()
    assert second.replicas[0] == ReplicaSignals(kv_usage=0.75, waiting=3, running=4, name=r0.url)
    assert second.request_rate == pytest.approx(5.0)  # (40 + 10) / 10 s
    assert second.prompt_token_rate == pytest.approx(400.0)
    assert second.generation_token_rate == pytest.approx(150.0)
    # Bucket rates summed over replicas: 20/s to 0.1 s, 40/s to 0.5 s and in all.
    assert second.ttft_p95_s == pytest.approx(0.1 + 0.4 * 18 / 20)
    # Only r0 produced tokens: 90/s to 0.05 s, 100/s to 0.1 s; the 95th is half-way.
    assert second.itl_p95_s == pytest.approx(0.075)


async def test_no_traffic_is_a_zero_rate_and_an_unknown_quantile(
    engines: list[MetricsServer], http: aiohttp.ClientSession
) -> None:
    r0 = engines[0]
    signals = ScrapeSignals([r0.url], http, window_s=30.0)
    serve(r0, success={"stop": 7}, prompt_tokens=70, ttft={0.1: 7, INF: 7}, itl={0.1: 9, INF: 9})
    await read(signals, now=0.0, ready=1)
    snapshot = await read(signals, now=15.0, ready=1)
    assert (snapshot.request_rate, snapshot.prompt_token_rate) == (0.0, 0.0)
    assert (snapshot.ttft_p95_s, snapshot.itl_p95_s) == (None, None)
    assert snapshot.notes == IDLE_QUANTILES


@pytest.mark.parametrize(
    ("after_restart", "created"),
    [
        (50.0, 1_700_000_000.0),  # counters went down: a restart, whatever _created says
        (500.0, 1_700_000_100.0),  # counters went up, but the engine started again since
    ],
)
async def test_a_counter_reset_counts_from_zero(
    engines: list[MetricsServer],
    http: aiohttp.ClientSession,
    after_restart: float,
    created: float,
) -> None:
    r0 = engines[0]
    signals = ScrapeSignals([r0.url], http, window_s=30.0)
    serve(r0, prompt_tokens=100.0, ttft={0.1: 10, 1.0: 20, INF: 20})
    await read(signals, now=100.0, ready=1)
    serve(r0, prompt_tokens=400.0, ttft={0.1: 10, 1.0: 40, INF: 40})
    await read(signals, now=110.0, ready=1)
    # Restarted between 110 and 120: what it shows now all came after the restart.
    serve(
        r0,
        prompt_tokens=after_restart,
        ttft={0.1: 20, 1.0: 20, INF: 20},
        created=created,
    )
    snapshot = await read(signals, now=120.0, ready=1)
    assert snapshot.prompt_token_rate == pytest.approx((300 + after_restart) / 20)
    # Before the restart 20 TTFTs in (0.1, 1]; after it 20 at most 0.1 s.
    assert snapshot.ttft_p95_s == pytest.approx(0.1 + 0.9 * (38 - 20) / 20)


async def test_rates_cover_the_window_from_the_newest_scrape_before_it(
    engines: list[MetricsServer], http: aiohttp.ClientSession
) -> None:
    r0 = engines[0]
    signals = ScrapeSignals([r0.url], http, window_s=20.0)
    rates: list[float | None] = []
    for now, tokens in ((100.0, 0.0), (110.0, 100.0), (120.0, 300.0), (130.0, 600.0)):
        serve(r0, prompt_tokens=tokens)
        rates.append((await read(signals, now=now, ready=1)).prompt_token_rate)
    # From 100 to 110, from 100 to 120, then from 110 (the window's start) to 130.
    assert rates == [None, pytest.approx(10.0), pytest.approx(15.0), pytest.approx(25.0)]


async def test_a_series_missing_from_one_scrape_of_the_window_is_unknown(
    engines: list[MetricsServer], http: aiohttp.ClientSession
) -> None:
    r0 = engines[0]
    signals = ScrapeSignals([r0.url], http, window_s=60.0)
    serve(r0, prompt_tokens=0.0)
    await read(signals, now=0.0, ready=1)
    r0.page = "vllm:num_requests_running 1\n"  # an odd page: its counters are gone
    await read(signals, now=10.0, ready=1)
    serve(r0, prompt_tokens=200.0)
    snapshot = await read(signals, now=20.0, ready=1)
    assert snapshot.prompt_token_rate is None
    assert snapshot.notes == unknown_rates()


async def test_an_unreachable_replica_is_unknown_and_starts_over_when_back(
    engines: list[MetricsServer], http: aiohttp.ClientSession
) -> None:
    r0, r1, _ = engines
    nowhere = f"http://127.0.0.1:{free_port()}/metrics"
    signals = ScrapeSignals([r0.url, r1.url, nowhere], http, window_s=60.0)
    serve(r0, kv_usage=0.5, success={"stop": 0})
    serve(r1, kv_usage=0.5, success={"stop": 0})
    await read(signals, now=0.0, ready=3)
    serve(r0, kv_usage=0.5, success={"stop": 30})
    serve(r1, kv_usage=0.5, success={"stop": 60})
    r1.status = 503
    snapshot = await read(signals, now=10.0, ready=3)
    assert snapshot.replicas[1:] == (
        ReplicaSignals(kv_usage=None, waiting=None, running=None, name=r1.url),
        ReplicaSignals(kv_usage=None, waiting=None, running=None, name=nowhere),
    )
    assert snapshot.request_rate == pytest.approx(3.0)  # r0's alone
    assert snapshot.notes[0] == f"{r1.url}: unreachable (HTTP 503)"
    assert snapshot.notes[1].startswith(f"{nowhere}: unreachable (ClientConnectorError(")
    # Back, with counters that may have restarted meanwhile: no rate from it until next time.
    r1.status = 200
    serve(r1, kv_usage=0.5, success={"stop": 90})
    snapshot = await read(signals, now=20.0, ready=3)
    assert snapshot.replicas[1].kv_usage == 0.5
    assert f"{r1.url}: first scrape, its rates count from the next read" in snapshot.notes
    assert snapshot.request_rate == pytest.approx(30 / 20)  # still r0's alone


async def test_replicas_appearing_and_disappearing(
    engines: list[MetricsServer], http: aiohttp.ClientSession
) -> None:
    r0, r1, r2 = engines
    signals = ScrapeSignals([r0.url, r1.url], http, window_s=60.0)
    for server in engines:
        serve(server, success={"stop": 0})
    await read(signals, now=0.0)
    for server in engines:
        serve(server, success={"stop": 100})
    signals.set_urls([r0.url, r2.url])  # r1 gone, r2 new
    snapshot = await read(signals, now=10.0, ready=3)
    # The third ready replica is not scraped: unknown, not idle.
    assert [replica.name for replica in snapshot.replicas] == [r0.url, r2.url, None]
    assert snapshot.replicas[2] == ReplicaSignals(None, None, None)
    assert snapshot.request_rate == pytest.approx(10.0)
    assert snapshot.notes == (
        f"{r2.url}: first scrape, its rates count from the next read",
        "2 replicas to scrape, 3 ready",
        *IDLE_QUANTILES,
    )
    # r1 comes back under the same URL: a new replica, without the old history.
    signals.set_urls([r0.url, r1.url, r2.url])
    snapshot = await read(signals, now=20.0, ready=3)
    assert snapshot.notes == (
        f"{r1.url}: first scrape, its rates count from the next read",
        *IDLE_QUANTILES,
    )
    with pytest.raises(ValueError, match="listed twice"):
        signals.set_urls([r0.url, r0.url])


async def test_pages_without_vllm_series_or_unreadable(
    engines: list[MetricsServer], http: aiohttp.ClientSession
) -> None:
    r0, r1, _ = engines
    r0.page = "# TYPE up gauge\nup 1\n"
    r1.page = "vllm:num_requests_running{engine=0} 3\n"
    snapshot = await ScrapeSignals([r0.url, r1.url], http).read(
        "decode", Role.DECODE, ready=2, now=0.0
    )
    assert snapshot.replicas == (
        ReplicaSignals(None, None, None, name=r0.url),
        ReplicaSignals(None, None, None, name=r1.url),
    )
    assert snapshot.notes[0] == f"{r0.url}: no kv_usage, waiting, running in its /metrics"
    assert snapshot.notes[2].startswith(f"{r1.url}: unreadable /metrics (")


def values(scrape_text: str) -> Mapping[str, object]:
    scrape = parse_engine_page(scrape_text, at=1.0)
    return {
        "gauges": (scrape.kv_usage, scrape.waiting, scrape.running),
        "counters": dict(scrape.counters),
        "histograms": {k: dict(v) for k, v in scrape.histograms.items()},
        "started": scrape.started,
    }


def test_a_page_is_read_as_vllm_writes_it() -> None:
    page = vllm_page(
        [
            Engine(kv_usage=0.5, waiting=1, running=2, success={"stop": 3, "length": 4}),
            Engine(kv_usage=0.7, waiting=2, running=3, prompt_tokens=5, engine="1", created=9.0),
        ]
    )
    assert values(page) == {
        "gauges": (pytest.approx(0.6), 3.0, 5.0),
        "counters": {
            "vllm:request_success": 7.0,
            "vllm:prompt_tokens": 5.0,  # not vllm:prompt_tokens_cached_total
            "vllm:generation_tokens": 0.0,
        },
        "histograms": {"ttft_p95_s": {0.1: 0.0, INF: 0.0}, "itl_p95_s": {0.1: 0.0, INF: 0.0}},
        "started": 9.0,
    }


def test_names_from_before_vllm_renamed_them_are_read() -> None:
    page = """\
vllm:gpu_cache_usage_perc{model_name="m"} 0.25
vllm:num_requests_waiting{model_name="m"} 1
vllm:num_requests_running{model_name="m"} NaN
vllm:time_per_output_token_seconds_bucket{le="0.1",model_name="m"} 3
vllm:time_per_output_token_seconds_bucket{le="+Inf",model_name="m"} 4
"""
    assert values(page) == {
        "gauges": (0.25, 1.0, None),
        "counters": {},
        "histograms": {"itl_p95_s": {0.1: 3.0, INF: 4.0}},
        "started": None,
    }


async def test_a_replica_joining_within_the_window_does_not_count_moved_traffic_twice(
    engines: list[MetricsServer], http: aiohttp.ClientSession
) -> None:
    r0, r1, _ = engines
    signals = ScrapeSignals([r0.url], http, window_s=60.0)
    # r0 alone serves 10 req/s for 20 s, then r1 joins and takes half: still 10 req/s in all.
    serve(r0, success={"stop": 0})
    await read(signals, now=0.0, ready=1)
    serve(r0, success={"stop": 200})
    await read(signals, now=20.0, ready=1)
    signals.set_urls([r0.url, r1.url])
    serve(r1, success={"stop": 0})
    await read(signals, now=20.0, ready=2)
    serve(r0, success={"stop": 250})
    serve(r1, success={"stop": 50})
    snapshot = await read(signals, now=30.0, ready=2)
    # 300 requests over the 30 s the window covers; averaging r1 over its own 10 s alone
    # would have said 250/30 + 50/10 = 13.3/s.
    assert snapshot.request_rate == pytest.approx(10.0)
