"""The engine loop on an injected wall clock: steps end to end, catching up after a stall."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tests.emulator.helpers import metric
from tiergate.emulator import Engine, Scheduler, SchedulerLimits, VllmMetrics


class MillisecondSteps:
    def step_time(
        self, prefill: Sequence[tuple[int, int]], decode_contexts: Sequence[int]
    ) -> float:
        return 0.001


@pytest.mark.parametrize(("tolerance_s", "catch_ups"), [(0.02, 1), (1e6, 0)])
async def test_engine_catches_up_with_the_wall_clock_only_past_its_tolerance(
    tolerance_s: float, catch_ups: int
) -> None:
    wall = [100.0]  # frozen unless the test moves it: the engine runs ahead of it, never behind
    scheduler = Scheduler(MillisecondSteps(), 100, SchedulerLimits())
    engine = Engine(
        scheduler, VllmMetrics("m", 1000), clock=lambda: wall[0], lag_tolerance_s=tolerance_s
    )
    engine.start()
    try:
        handle = engine.submit(10, 4, "length", streaming=True)
        request = handle.request
        while request.num_output < 1:
            await handle.wait()
        wall[0] += 10.0  # the process stalls for ten seconds
        while not request.finished:
            await handle.wait()
    finally:
        await engine.stop()
    assert engine.catch_ups == catch_ups
    assert request.first_token_at is not None
    assert request.last_token_at is not None
    decode_s = request.last_token_at - request.first_token_at
    if catch_ups:
        assert decode_s > 9.9  # the stall shows in the latencies, as it would on a real engine
    else:
        assert decode_s == pytest.approx(0.003)  # engine time stays the model's


async def test_stop_aborts_requests_in_flight() -> None:
    scheduler = Scheduler(MillisecondSteps(), 100, SchedulerLimits())
    metrics = VllmMetrics("m", 1000)
    engine = Engine(scheduler, metrics, speed=1e-3)  # a step lasts a wall second
    engine.start()
    handle = engine.submit(10, 4, "length", streaming=False)
    await engine.stop()
    assert handle.request.finished
    assert not scheduler.has_work()
    text = metrics.exposition().decode()
    assert metric(text, "vllm:request_success_total", finished_reason="abort") == 1
