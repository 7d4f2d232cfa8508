"""The scaling loop end to end on one machine: emulated vLLM replicas, their own ``/metrics``
scraped by the scaler (``signals: {scrape: ...}``), and an actuator in this test that starts
replicas (cold: not ready for a model load, shortened by the emulator's speed) and stops them
on the scaler's decisions, under an open-loop trace whose rate rises then falls.

The signals are direct scrapes rather than a real Prometheus: the actuator changes the scrape
list as replicas come and go (``ScrapeSignals.set_urls``), which Prometheus would need file or
HTTP service discovery for.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from dataclasses import dataclass, field

import aiohttp

from tests.polling import eventually
from tiergate.emulator import EmulatorConfig
from tiergate.emulator.replica import Replica
from tiergate.scaling.controller import Controller
from tiergate.scaling.signals import ScrapeSignals
from tiergate.spec import parse_fleet

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
SPEED = 17.0  # the 8B model's ~35 s load on NVMe becomes ~2 s
MAX_REPLICAS = 3
PER_REPLICA_RPS = 4.0
DOWN_STABILIZATION_S = 6.0
STEP_S = 1.0
# (seconds, requests per second): rises past what MAX_REPLICAS carry, then falls to a trickle.
TRACE = ((3.0, 2.0), (9.0, 16.0), (14.0, 1.0))
DRAIN_S = 4.0


def fleet_text(url: str, cold_start_s: float) -> str:
    return f"""\
models:
  - {{name: m, provider: openai-compatible, baseUrl: "http://vllm:8000/v1", model: m, costPer1kTokens: 1}}
scaling:
  - deployment: vllm-m
    mode: tiergate
    minReplicas: 1
    maxReplicas: {MAX_REPLICAS}
    coldStartS: {cold_start_s:g}
    targets: {{requestsPerReplicaS: {PER_REPLICA_RPS:g}}}
    windows: {{stableS: 6, panicS: 2, scaleDownStabilizationS: {DOWN_STABILIZATION_S:g}}}
    signals: {{scrape: {{urls: ["{url}"]}}}}
"""


def arrivals() -> list[float]:
    """Evenly spaced arrival times (seconds from the start) of the trace: a bounded count."""
    times: list[float] = []
    start = 0.0
    for duration_s, rate in TRACE:
        count = round(duration_s * rate)
        times += [start + i / rate for i in range(count)]
        start += duration_s
    return times


@dataclass
class Fleet:
    """The replicas the actuator asked for: starting (cold) or serving."""

    config: EmulatorConfig
    http: aiohttp.ClientSession
    replicas: list[Replica] = field(default_factory=list)
    inflight: dict[int, int] = field(default_factory=dict)  # by id(replica)
    served: int = 0
    failed: int = 0
    _turn: int = 0

    def serving(self) -> list[Replica]:
        return [replica for replica in self.replicas if replica.ready]

    async def add(self) -> None:
        replica = Replica(self.config, len(self.replicas), port=0)
        await replica.start(cold=True)
        self.replicas.append(replica)

    async def remove(self) -> None:
        """Give back the newest replica (a starting one first), after its requests finish."""
        replica = self.replicas.pop()
        await eventually(
            lambda: not self.inflight.get(id(replica), 0), timeout_s=5.0, what="requests drained"
        )
        await replica.close()

    async def send(self) -> None:
        """One request to the next serving replica (round robin)."""
        serving = self.serving()
        if not serving:
            self.failed += 1
            return
        replica = serving[self._turn % len(serving)]
        self._turn += 1
        key = id(replica)
        self.inflight[key] = self.inflight.get(key, 0) + 1
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
        headers = {"x-emulator-prompt-tokens": "64"}
        try:
            async with self.http.post(
                f"{replica.url}/chat/completions", json=body, headers=headers
            ) as response:
                await response.read()
                if response.status == 200:
                    self.served += 1
                else:
                    self.failed += 1
        finally:
            self.inflight[key] -= 1


async def replay(fleet: Fleet, t0: float) -> None:
    """Open loop: each request leaves at its time, whether or not earlier ones are answered."""
    requests: set[asyncio.Task[None]] = set()
    for at in arrivals():
        await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
        task = asyncio.create_task(fleet.send())
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
    guard: str | None
    reason: str


async def test_replicas_follow_a_rising_then_falling_trace() -> None:
    config = EmulatorConfig(MODEL, "H100", speed=SPEED, lag_tolerance_s=1e6, cold_start=True)
    cold_start_s = config.perf_model().load_time() / SPEED
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        fleet = Fleet(config, http)
        try:
            await fleet.add()
            first = fleet.replicas[0]
            await eventually(lambda: first.ready, timeout_s=cold_start_s + 5, what="first ready")
            spec = parse_fleet(
                fleet_text(f"{first.origin}/metrics", cold_start_s), "f.yaml", env={}
            )
            controller = Controller(spec.scaling, http, clock=time.monotonic)
            (item,) = controller.scaled.values()
            reader = item.reader
            assert isinstance(reader, ScrapeSignals)
            timeline = await actuate(fleet, controller, reader)
        finally:
            for replica in fleet.replicas:
                await replica.close()

    print(f"\ncold start {cold_start_s:.2f} s; served {fleet.served}, failed {fleet.failed}")
    print("    t  desired  asked  serving  guard          reason")
    for tick in timeline:
        print(
            f"{tick.t:5.1f}  {tick.desired:7d}  {tick.asked:5d}  {tick.serving:7d}  "
            f"{tick.guard or '-':13s}  {tick.reason}"
        )

    assert fleet.failed == 0
    assert fleet.served == len(arrivals())
    assert all(tick.desired <= MAX_REPLICAS and tick.asked <= MAX_REPLICAS for tick in timeline)
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


async def actuate(fleet: Fleet, controller: Controller, reader: ScrapeSignals) -> list[Tick]:
    """Every second: scrape what serves, decide, start or stop replicas; until the trace has
    been replayed and the fleet has had ``DRAIN_S`` to shrink."""
    timeline: list[Tick] = []
    t0 = time.monotonic()
    load = asyncio.create_task(replay(fleet, t0))
    end_s = sum(duration for duration, _ in TRACE) + DRAIN_S
    try:
        while (now := time.monotonic() - t0) < end_s:
            reader.set_urls(f"{replica.origin}/metrics" for replica in fleet.serving())
            await controller.step()
            (item,) = controller.scaled.values()
            decision = item.decision
            assert decision is not None
            while len(fleet.replicas) < decision.desired:
                await fleet.add()
            while len(fleet.replicas) > decision.desired:
                await fleet.remove()
            timeline.append(
                Tick(
                    round(now, 1),
                    decision.desired,
                    len(fleet.replicas),
                    len(fleet.serving()),
                    decision.guard,
                    decision.reason,
                )
            )
            await asyncio.sleep(max(0.0, t0 + STEP_S * math.ceil(now + 1e-3) - time.monotonic()))
        async with asyncio.timeout(10.0):
            await load
    finally:
        if not load.done():
            load.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await load
    return timeline
