"""One mode of the autoscaling evaluation (``bench/scaling.py``): an emulated deployment, the
scaler deciding every step on its scraped signals, the pool actuating, the trace replayed.

All times handed to the scaler and kept in results are model seconds: wall seconds since the
start times ``speed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from tiergate.emulator import EmulatorConfig
from tiergate.emulator.pool import EmulatorPool
from tiergate.emulator.routes import PROMPT_TOKENS_HEADER
from tiergate.scaling.controller import Controller
from tiergate.scaling.signals import ScrapeSignals
from tiergate.sim.workloads import TraceRequest
from tiergate.spec.scaling import ScalingEntry

DEPLOYMENT = "vllm-eval"
SERVED = "eval-model"
LATE_S = 0.25  # a send later than this (model seconds) is the harness falling behind
PLACEHOLDER = "http://127.0.0.1:9/metrics"  # replaced by the ready replicas before each read


@dataclass(frozen=True)
class Setup:
    model: str
    gpu: str
    tp: int
    speed: float
    cold_start_s: float
    step_s: float
    min_replicas: int
    max_replicas: int
    prompt_target: float
    tail_s: float
    slo_s: float = 2.0


@dataclass(frozen=True)
class Tick:
    t: float  # model seconds since the first arrival
    desired: int
    asked: int
    ready: int
    reason: str


@dataclass
class ModeResult:
    mode: str
    gpus_per_replica: int
    slo_s: float
    arrivals: list[float] = field(default_factory=list)  # model seconds, per request
    ttfts: list[float | None] = field(default_factory=list)  # None: the request failed
    timeline: list[Tick] = field(default_factory=list)
    replica_seconds: float = 0.0
    late_sends: int = 0

    @property
    def failed(self) -> int:
        return sum(ttft is None for ttft in self.ttfts)

    def slo_share(self, slo_s: float) -> float:
        met = sum(ttft is not None and ttft <= slo_s for ttft in self.ttfts)
        return met / len(self.ttfts) if self.ttfts else 0.0

    def per_minute(self, minutes: int) -> list[tuple[int, int, str]]:
        asked, ready = [0] * minutes, [0] * minutes
        for tick in self.timeline:
            minute = int(tick.t // 60)
            if minute < minutes:
                asked[minute], ready[minute] = tick.asked, tick.ready
        met, sent = [0] * minutes, [0] * minutes
        for at, ttft in zip(self.arrivals, self.ttfts, strict=True):
            minute = int(at // 60)
            sent[minute] += 1
            met[minute] += ttft is not None and ttft <= self.slo_s
        shares = [f"{met[m] / sent[m]:.0%}" if sent[m] else "-" for m in range(minutes)]
        return list(zip(asked, ready, shares, strict=True))


def scaling_entry(mode: str, setup: Setup) -> ScalingEntry:
    """The seed's three targets for both modes; tiergate also scales on prompt tokens."""
    targets: dict[str, Any] = {"kvCacheUsage": 0.8, "waitingPerReplica": 10, "ttftP95S": 2}
    if mode == "tiergate":
        targets["promptTokensPerReplicaS"] = setup.prompt_target
    return ScalingEntry.model_validate(
        {
            "deployment": DEPLOYMENT,
            "mode": mode,
            "minReplicas": setup.min_replicas,
            "maxReplicas": setup.max_replicas,
            "coldStartS": setup.cold_start_s,
            "targets": targets,
            "windows": {"stableS": 60, "panicS": 6},
            "signals": {"scrape": {"urls": [PLACEHOLDER]}},
        }
    )


class ModelClock:
    """Model seconds since ``start()``: wall seconds times ``speed``."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.origin = time.monotonic()

    def start(self) -> None:
        self.origin = time.monotonic()

    def __call__(self) -> float:
        return (time.monotonic() - self.origin) * self.speed

    def of(self, wall: float) -> float:
        return (wall - self.origin) * self.speed

    def wall_at(self, model_s: float) -> float:
        return self.origin + model_s / self.speed


async def run_mode(
    mode: str, setup: Setup, requests: list[TraceRequest], session: aiohttp.ClientSession
) -> ModeResult:
    config = EmulatorConfig(
        setup.model,
        setup.gpu,
        tp=setup.tp,
        speed=setup.speed,
        cold_start=True,
        load_time_s=setup.cold_start_s,
        served_model_name=SERVED,
    )
    clock = ModelClock(setup.speed)
    result = ModeResult(mode, setup.tp, setup.slo_s)
    entry = scaling_entry(mode, setup)
    async with EmulatorPool(config, DEPLOYMENT, to_caller=clock.of) as pool:
        await pool.scale_to(setup.min_replicas, cold=False)
        controller = Controller((entry,), session, clock=clock, replicas=pool)
        (item,) = controller.scaled.values()
        reader = item.reader
        assert isinstance(reader, ScrapeSignals)
        end_s = max(r.arrival_s for r in requests) + setup.tail_s
        clock.start()
        baseline = pool.replica_seconds()
        replay = asyncio.create_task(Sender(pool, session, clock, result).send_all(requests))
        try:
            while (now := clock()) < end_s:
                reader.set_urls(f"{replica.origin}/metrics" for replica in pool.ready())
                await controller.step()
                decision = item.decision
                assert decision is not None
                await pool.scale_to(decision.desired)
                ready = len(pool.ready())
                result.timeline.append(
                    Tick(now, decision.desired, len(pool), ready, decision.reason)
                )
                next_step = (int(now // setup.step_s) + 1) * setup.step_s
                await asyncio.sleep(
                    max(0.0, clock.wall_at(min(next_step, end_s)) - time.monotonic())
                )
            result.replica_seconds = (pool.replica_seconds() - baseline) * setup.speed
            await asyncio.wait_for(replay, timeout=60)
        finally:
            if not replay.done():
                replay.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await replay
    return result


class Sender:
    """Sends the trace's requests to the pool and writes what the client saw into ``result``."""

    def __init__(
        self,
        pool: EmulatorPool,
        session: aiohttp.ClientSession,
        clock: ModelClock,
        result: ModeResult,
    ) -> None:
        self._pool = pool
        self._session = session
        self._clock = clock
        self._result = result

    async def send_all(self, requests: list[TraceRequest]) -> None:
        """Open loop: each request leaves at its arrival time whether or not others are done."""
        result, clock = self._result, self._clock
        result.arrivals = [r.arrival_s for r in requests]
        result.ttfts = [None] * len(requests)
        tasks: set[asyncio.Task[None]] = set()
        for index, request in enumerate(requests):
            await asyncio.sleep(max(0.0, clock.wall_at(request.arrival_s) - time.monotonic()))
            if clock() - request.arrival_s > LATE_S:
                result.late_sends += 1
            task = asyncio.create_task(self._send(request, index))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks)

    async def _send(self, request: TraceRequest, index: int) -> None:
        """One streamed request to the next ready replica; its TTFT (model seconds from its
        arrival to the first generated text) goes into the result, None when it failed."""
        body = orjson.dumps(
            {
                "model": SERVED,
                "messages": [{"role": "user", "content": "x"}],
                "max_tokens": max(1, request.output_tokens),
                "ignore_eos": True,
                "stream": True,
            }
        )
        headers = {
            "Content-Type": "application/json",
            PROMPT_TOKENS_HEADER: str(request.prompt_tokens),
        }
        async with self._pool.lease() as replica:
            if replica is None:
                return
            url = f"{replica.url}/chat/completions"
            try:
                async with self._session.post(url, data=body, headers=headers) as response:
                    first: float | None = None
                    async for line in response.content:
                        if first is None and response.status == 200 and is_text(line):
                            first = self._clock() - request.arrival_s
                    if first is not None:
                        self._result.ttfts[index] = first
            except (aiohttp.ClientError, TimeoutError):
                return


def is_text(line: bytes) -> bool:
    """An SSE chunk carrying generated text (not the role chunk's empty content)."""
    return line.startswith(b"data: {") and b'"content":"' in line and b'"content":""' not in line
