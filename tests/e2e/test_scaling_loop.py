"""The scaling loop end to end on one machine: emulated vLLM replicas, their own ``/metrics``
scraped by the scaler (``signals: {scrape: ...}``), and an actuator in this test that scales an
:class:`~tiergate.emulator.pool.EmulatorPool` (new replicas start cold: not ready for a model
load, shortened by the emulator's speed) on the scaler's decisions, under an open-loop trace
whose rate rises then falls. The pool is also the controller's replica source, as the
Kubernetes API is in a cluster: its snapshots count the replicas still starting as pending.

The signals are direct scrapes rather than a real Prometheus: the actuator changes the scrape
list as replicas come and go (``ScrapeSignals.set_urls``). ``test_scaling_prometheus.py`` runs
the same loop through Prometheus and file service discovery, with the helpers of this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp

from tiergate.emulator import EmulatorConfig
from tiergate.emulator.pool import EmulatorPool
from tiergate.emulator.replica import Replica
from tiergate.scaling.controller import Controller
from tiergate.scaling.signals import ScrapeSignals
from tiergate.spec import parse_fleet

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
DEPLOYMENT = "vllm-m"
SPEED = 17.0  # the 8B model's ~35 s load on NVMe becomes ~2 s
MIN_REPLICAS = 1
MAX_REPLICAS = 3
PER_REPLICA_RPS = 4.0
DOWN_STABILIZATION_S = 6.0
STEP_S = 1.0
# (seconds, requests per second): rises past what MAX_REPLICAS carry, then falls to a trickle.
TRACE = ((3.0, 2.0), (9.0, 16.0), (14.0, 1.0))
DRAIN_S = 4.0

Trace = Sequence[tuple[float, float]]


def fleet_text(
    signals: str, cold_start_s: float, down_stabilization_s: float = DOWN_STABILIZATION_S
) -> str:
    """The one-entry fleet both loop tests scale; ``signals`` is the entry's YAML flow map."""
    return f"""\
models:
  - {{name: m, provider: openai-compatible, baseUrl: "http://vllm:8000/v1", model: m, costPer1kTokens: 1}}
scaling:
  - deployment: {DEPLOYMENT}
    mode: tiergate
    minReplicas: {MIN_REPLICAS}
    maxReplicas: {MAX_REPLICAS}
    coldStartS: {cold_start_s:g}
    targets: {{requestsPerReplicaS: {PER_REPLICA_RPS:g}}}
    windows: {{stableS: 6, panicS: 2, scaleDownStabilizationS: {down_stabilization_s:g}}}
    signals: {signals}
"""


def arrivals(trace: Trace = TRACE) -> list[float]:
    """Evenly spaced arrival times (seconds from the start) of ``trace``: a bounded count."""
    times: list[float] = []
    start = 0.0
    for duration_s, rate in trace:
        count = round(duration_s * rate)
        times += [start + i / rate for i in range(count)]
        start += duration_s
    return times


def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(MODEL, "H100", speed=SPEED, lag_tolerance_s=1e6, cold_start=True)


@dataclass
class Load:
    """Requests sent to the pool's ready replicas (round robin), and how they ended."""

    pool: EmulatorPool
    http: aiohttp.ClientSession
    served: int = 0
    failed: int = 0

    async def send(self) -> None:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
        headers = {"x-emulator-prompt-tokens": "64"}
        async with self.pool.lease() as replica:
            if replica is None:
                self.failed += 1
                return
            try:
                async with self.http.post(
                    f"{replica.url}/chat/completions", json=body, headers=headers
                ) as response:
                    await response.read()
                    ok = response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
        if ok:
            self.served += 1
        else:
            self.failed += 1

    async def replay(self, times: list[float], t0: float) -> None:
        """Open loop: each request leaves at its time, whether or not earlier ones are
        answered."""
        requests: set[asyncio.Task[None]] = set()
        for at in times:
            await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
            task = asyncio.create_task(self.send())
            requests.add(task)
            task.add_done_callback(requests.discard)
        if requests:
            await asyncio.wait(requests, timeout=5.0)


@dataclass(frozen=True)
class Tick:
    t: float  # seconds since the start
    desired: int
    asked: int  # replicas asked for after acting on ``desired``
    serving: int
    seen: int  # replicas the signals reported
    pending: int  # in the snapshot the scaler decided on
    pending_ready_at: tuple[float, ...]
    guard: str | None
    reason: str


def print_timeline(timeline: list[Tick], load: Load, cold_start_s: float) -> None:
    print(f"\ncold start {cold_start_s:.2f} s; served {load.served}, failed {load.failed}")
    print("    t  desired  asked  serving  seen  pending  guard          reason")
    for tick in timeline:
        print(
            f"{tick.t:5.1f}  {tick.desired:7d}  {tick.asked:5d}  {tick.serving:7d}  "
            f"{tick.seen:4d}  {tick.pending:7d}  {tick.guard or '-':13s}  {tick.reason}"
        )


async def test_replicas_follow_a_rising_then_falling_trace() -> None:
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        EmulatorPool(emulator_config(), DEPLOYMENT) as pool,
    ):
        await pool.scale_to(1, cold=False)
        (first,) = pool.ready()
        spec = parse_fleet(
            fleet_text(f'{{scrape: {{urls: ["{first.origin}/metrics"]}}}}', pool.cold_start_s),
            "f.yaml",
            env={},
        )
        controller = Controller(spec.scaling, http, clock=time.monotonic, replicas=pool)
        (item,) = controller.scaled.values()
        reader = item.reader
        assert isinstance(reader, ScrapeSignals)

        def scrape(ready: list[Replica]) -> None:
            reader.set_urls(f"{replica.origin}/metrics" for replica in ready)

        load = Load(pool, http)
        end_s = sum(duration for duration, _ in TRACE) + DRAIN_S
        timeline = await actuate(
            pool, controller, load, times=arrivals(), end_s=end_s, publish=scrape
        )

    print_timeline(timeline, load, pool.cold_start_s)

    assert load.failed == 0
    assert load.served == len(arrivals())
    assert all(tick.desired <= MAX_REPLICAS and tick.asked <= MAX_REPLICAS for tick in timeline)
    # The pool told the scaler of the replicas it had asked for and that were still starting.
    assert any(tick.pending and len(tick.pending_ready_at) == tick.pending for tick in timeline)
    peak_start, peak_end = TRACE[0][0], TRACE[0][0] + TRACE[1][0]
    # The peak needs 16 / 4 = 4 replicas: the scaler asks for all it may, and they serve.
    during_peak = [tick for tick in timeline if peak_start <= tick.t <= peak_end + 2]
    assert max(tick.asked for tick in during_peak) == MAX_REPLICAS
    assert max(tick.serving for tick in during_peak) == MAX_REPLICAS
    # Scale-down waits the stabilization window after the last scale-up, then follows the fall.
    ups = [b.t for a, b in itertools.pairwise(timeline) if b.asked > a.asked]
    downs = [b.t for a, b in itertools.pairwise(timeline) if b.asked < a.asked]
    assert ups
    assert downs
    assert min(downs) >= max(ups) + DOWN_STABILIZATION_S - STEP_S / 2
    assert min(downs) > peak_end
    assert timeline[-1].asked < MAX_REPLICAS


async def actuate(
    pool: EmulatorPool,
    controller: Controller,
    load: Load,
    *,
    times: list[float],
    end_s: float,
    publish: Callable[[list[Replica]], None],
) -> list[Tick]:
    """Every second: ``publish`` the ready replicas to the signals, decide, scale the pool;
    until ``end_s`` seconds after the start, while ``load`` replays ``times``."""
    timeline: list[Tick] = []
    (item,) = controller.scaled.values()
    t0 = time.monotonic()
    replay = asyncio.create_task(load.replay(times, t0))
    try:
        while (now := time.monotonic() - t0) < end_s:
            publish(pool.ready())
            await controller.step()
            decision, snapshot = item.decision, item.snapshot
            assert decision is not None
            assert snapshot is not None
            await pool.scale_to(decision.desired)
            timeline.append(
                Tick(
                    round(now, 1),
                    decision.desired,
                    len(pool),
                    len(pool.ready()),
                    len(snapshot.replicas),
                    snapshot.pending,
                    snapshot.pending_ready_at,
                    decision.guard,
                    decision.reason,
                )
            )
            await asyncio.sleep(max(0.0, t0 + STEP_S * math.ceil(now + 1e-3) - time.monotonic()))
        async with asyncio.timeout(10.0):
            await replay
    finally:
        if not replay.done():
            replay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await replay
    return timeline
