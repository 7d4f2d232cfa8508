"""PrometheusSignals against a real Prometheus scraping engines every second.

The engines are small servers whose counters grow linearly in time and carry their own
timestamps, so that PromQL's ``rate`` (extrapolation included) is exactly the slope and every
field of the snapshot has a known value; then emulated vLLM replicas under load, which check
that the default queries name the series a vLLM engine really exposes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

import aiohttp

from tests.polling import eventually
from tests.scaling_signals.conftest import StartPrometheus
from tests.scaling_signals.pages import MODEL, Engine, MetricsServer, vllm_page
from tests.services import free_port
from tiergate.emulator import EmulatorCluster, EmulatorConfig, SchedulerLimits
from tiergate.scaling.signals import (
    PrometheusSignals,
    ScrapeSignals,
    SignalQueries,
    label_selector,
)
from tiergate.scaling.snapshot import ReplicaSignals, Role, Snapshot

BASE = 1e6  # counters start high: PromQL does not extrapolate them back to below zero
INF = math.inf
ITL_IDLE = {0.01: 1000.0, 0.1: 2000.0, INF: 2500.0}  # no tokens lately: the buckets stand still
SELECTOR = label_selector(namespace="llm", deployment="decode")


def pod_a(dt: float) -> list[Engine]:
    return [
        Engine(
            kv_usage=0.25,
            waiting=3,
            running=5,
            success={"stop": BASE + 2 * dt, "length": BASE + dt},
            prompt_tokens=BASE + 600 * dt,
            generation_tokens=BASE + 100 * dt,
            ttft={0.1: BASE + 10 * dt, 0.5: BASE + 20 * dt, INF: BASE + 20 * dt},
            itl=ITL_IDLE,
        )
    ]


def pod_b(dt: float) -> list[Engine]:
    """Two engines (data parallel): waiting and running add up, KV usage averages."""
    return [
        Engine(
            kv_usage=kv,
            waiting=waiting,
            running=running,
            success={"stop": BASE + 1.5 * dt},
            prompt_tokens=BASE + 450 * dt,
            generation_tokens=BASE + 75 * dt,
            ttft={0.1: BASE + 5 * dt, 0.5: BASE + 10 * dt, INF: BASE + 10 * dt},
            itl=ITL_IDLE,
            engine=engine,
        )
        for engine, kv, waiting, running in (("0", 0.4, 0, 3), ("1", 0.6, 1, 4))
    ]


def pod_of_another_deployment(dt: float) -> list[Engine]:
    """Busy and slow: any of it in the answers would show."""
    return [
        Engine(
            kv_usage=0.9,
            waiting=50,
            running=9,
            success={"stop": BASE + 100 * dt},
            prompt_tokens=BASE + 10_000 * dt,
            generation_tokens=BASE + 5_000 * dt,
            ttft={0.1: BASE, 0.5: BASE, INF: BASE + 100 * dt},
            itl={0.01: BASE + dt, 0.1: BASE + dt, INF: BASE + dt},
        )
    ]


def linear_page(engines: Callable[[float], list[Engine]], t0_ms: int) -> Callable[[int], str]:
    return lambda now_ms: vllm_page(engines((now_ms - t0_ms) / 1000), timestamp_ms=now_ms)


EXPECTED_REPLICAS = (
    ReplicaSignals(kv_usage=0.25, waiting=3, running=5, name="a"),
    ReplicaSignals(kv_usage=0.5, waiting=1, running=7, name="b"),
)
# Sum by le of the TTFT bucket rates: 20/s up to 0.1 s, 40/s up to 0.5 s and in all; the 38th
# of 40 falls 18/20 of the way through the (0.1, 0.5] bucket.
EXPECTED_TTFT_P95 = 0.1 + 0.4 * 18 / 20


def exact(snapshot: Snapshot) -> bool:
    def near(value: float | None, expected: float) -> bool:
        return value is not None and math.isclose(value, expected, rel_tol=1e-6)

    replicas_match = len(snapshot.replicas) == 2 and all(
        got.name == want.name
        and near(got.kv_usage, want.kv_usage or 0)
        and got.waiting == want.waiting
        and got.running == want.running
        for got, want in zip(snapshot.replicas, EXPECTED_REPLICAS, strict=True)
    )
    return (
        replicas_match
        and near(snapshot.request_rate, 6.0)
        and near(snapshot.prompt_token_rate, 1500.0)
        and near(snapshot.generation_token_rate, 250.0)
        and near(snapshot.ttft_p95_s, EXPECTED_TTFT_P95)
    )


async def test_default_queries_read_known_values_and_nan_as_unknown(
    prometheus_for: StartPrometheus, http: aiohttp.ClientSession
) -> None:
    t0_ms = time.time_ns() // 1_000_000
    servers = [
        MetricsServer(linear_page(engines, t0_ms))
        for engines in (pod_a, pod_b, pod_of_another_deployment)
    ]
    for server in servers:
        await server.start()
    try:
        a, b, other = servers
        prometheus = await prometheus_for(
            {
                a.address: {"namespace": "llm", "deployment": "decode", "pod": "a"},
                b.address: {"namespace": "llm", "deployment": "decode", "pod": "b"},
                other.address: {"namespace": "llm", "deployment": "prefill", "pod": "c"},
            }
        )
        signals = PrometheusSignals(prometheus, SignalQueries.for_vllm(SELECTOR, window="5s"), http)
        last: list[Snapshot] = []

        async def converged() -> bool:
            snapshot = await signals.read("decode", Role.DECODE, ready=2, now=42.0)
            last[:] = [snapshot]
            return exact(snapshot)

        # Exact once Prometheus holds more than a window of scrapes and has a fresh one.
        await eventually(converged, timeout_s=40.0, interval_s=0.5, what="exact signals")
    finally:
        for server in servers:
            await server.close()
    snapshot = last[0]
    assert (snapshot.deployment, snapshot.role, snapshot.at, snapshot.ready) == (
        "decode",
        Role.DECODE,
        42.0,
        2,
    )
    # No inter-token latency observed in the window: NaN from PromQL, None here, said why.
    assert snapshot.itl_p95_s is None
    assert snapshot.notes == ("itl_p95_s: NaN (nothing observed in the window)",)


async def test_a_selector_matching_nothing_gives_unknown_replicas_and_signals(
    prometheus_for: StartPrometheus, http: aiohttp.ClientSession
) -> None:
    async with MetricsServer(vllm_page([Engine(kv_usage=0.5)])) as server:
        prometheus = await prometheus_for({server.address: {"namespace": "llm", "pod": "a"}})
        queries = SignalQueries.for_vllm(label_selector(namespace="elsewhere"))
        snapshot = await PrometheusSignals(prometheus, queries, http).read(
            "decode", Role.DECODE, ready=3, now=1.0
        )
    unknown = ReplicaSignals(kv_usage=None, waiting=None, running=None)
    assert snapshot.replicas == (unknown, unknown, unknown)
    assert (
        snapshot.request_rate,
        snapshot.prompt_token_rate,
        snapshot.generation_token_rate,
        snapshot.ttft_p95_s,
        snapshot.itl_p95_s,
    ) == (None, None, None, None, None)
    empty = "empty result (no series matched)"
    assert snapshot.notes == (
        f"kv_usage: {empty}",
        f"waiting: {empty}",
        f"running: {empty}",
        f"request_rate: {empty}",
        f"prompt_token_rate: {empty}",
        f"generation_token_rate: {empty}",
        f"ttft_p95_s: {empty}",
        f"itl_p95_s: {empty}",
        "signals for 0 replicas, 3 ready",
    )


async def test_prometheus_down_reads_everything_unknown(http: aiohttp.ClientSession) -> None:
    signals = PrometheusSignals(
        f"http://127.0.0.1:{free_port()}", SignalQueries.for_vllm(), http, timeout_s=2.0
    )
    snapshot = await signals.read(
        "decode", Role.DECODE, ready=2, pending=1, pending_ready_at=(30.0,), now=5.0
    )
    assert snapshot.replicas == (ReplicaSignals(None, None, None),) * 2
    assert (snapshot.pending, snapshot.pending_ready_at) == (1, (30.0,))
    assert snapshot.request_rate is None
    assert snapshot.ttft_p95_s is None
    assert snapshot.itl_p95_s is None
    assert len(snapshot.notes) == 9
    assert all("Prometheus unreachable" in note for note in snapshot.notes[:8])


# --- emulated vLLM replicas -------------------------------------------------------------------

CLIENTS_PER_REPLICA = 8
MAX_NUM_SEQS = 4


async def closed_loop(http: aiohttp.ClientSession, url: str) -> None:
    """One client sending requests back to back until cancelled."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}
    headers = {"x-emulator-prompt-tokens": "100"}
    while True:
        async with http.post(f"{url}/chat/completions", json=body, headers=headers) as response:
            assert response.status == 200
            await response.read()


def complete(snapshot: Snapshot) -> bool:
    """Every signal known, every replica busy."""
    return (
        None
        not in (
            snapshot.request_rate,
            snapshot.prompt_token_rate,
            snapshot.generation_token_rate,
            snapshot.ttft_p95_s,
            snapshot.itl_p95_s,
        )
        and len(snapshot.replicas) == 2
        and all(
            r.kv_usage is not None and r.waiting is not None and (r.running or 0) > 0
            for r in snapshot.replicas
        )
    )


def assert_plausible(snapshot: Snapshot) -> None:
    assert snapshot.notes == ()
    for replica in snapshot.replicas:
        assert 0 < (replica.kv_usage or 0) <= 1
        assert 0 < (replica.running or 0) <= MAX_NUM_SEQS
        assert 0 <= (replica.waiting or 0) <= CLIENTS_PER_REPLICA - 1
    assert (snapshot.request_rate or 0) > 0
    assert (snapshot.prompt_token_rate or 0) > 0
    assert (snapshot.generation_token_rate or 0) > 0
    assert (snapshot.ttft_p95_s or 0) > 0
    assert (snapshot.itl_p95_s or 0) > 0


async def test_default_queries_and_scrapes_read_emulated_vllm_replicas(
    prometheus_for: StartPrometheus, http: aiohttp.ClientSession
) -> None:
    config = EmulatorConfig(
        MODEL,
        "H100",
        speed=2.0,
        lag_tolerance_s=1e6,
        kv_capacity_tokens=4096,
        limits=SchedulerLimits(max_num_seqs=MAX_NUM_SEQS),
    )
    async with EmulatorCluster(config, replicas=2) as cluster:
        clients = [
            asyncio.create_task(closed_loop(http, url))
            for url in cluster.urls
            for _ in range(CLIENTS_PER_REPLICA)
        ]
        try:
            addresses = [origin.removeprefix("http://") for origin in cluster.origins]
            prometheus = await prometheus_for(
                {
                    address: {"namespace": "llm", "deployment": "decode", "pod": f"r{index}"}
                    for index, address in enumerate(addresses)
                }
            )
            queries = SignalQueries.for_vllm(SELECTOR, window="5s")
            from_prometheus = PrometheusSignals(prometheus, queries, http)
            scrapes = ScrapeSignals(
                [f"{origin}/metrics" for origin in cluster.origins], http, window_s=30.0
            )
            last: dict[str, Snapshot] = {}

            async def both_complete() -> bool:
                now = time.monotonic()
                last["prometheus"] = await from_prometheus.read(
                    "decode", Role.DECODE, ready=2, now=now
                )
                last["scrape"] = await scrapes.read("decode", Role.DECODE, ready=2, now=now)
                return all(complete(snapshot) for snapshot in last.values())

            await eventually(both_complete, timeout_s=40.0, interval_s=0.5, what="all signals")
        finally:
            for client in clients:
                client.cancel()
            await asyncio.wait(clients)
    assert [r.name for r in last["prometheus"].replicas] == ["r0", "r1"]
    assert [r.name for r in last["scrape"].replicas] == [f"{o}/metrics" for o in cluster.origins]
    for snapshot in last.values():
        assert_plausible(snapshot)
