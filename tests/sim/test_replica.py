"""The iteration-level replica: the emulator's scheduler stepped on the simulator's loop."""

from __future__ import annotations

import pytest

from tiergate.emulator.scheduler import SchedulerLimits
from tiergate.perf import PerfModel, gpu_named, model_named
from tiergate.sim.loop import EventLoop
from tiergate.sim.replica import Replica
from tiergate.sim.request import SimRequest


class Sink:
    def __init__(self) -> None:
        self.first: list[tuple[SimRequest, float]] = []
        self.done: list[tuple[SimRequest, float]] = []

    def first_token(self, request: SimRequest, at: float) -> None:
        self.first.append((request, at))

    def finished(self, request: SimRequest, at: float) -> None:
        self.done.append((request, at))


@pytest.fixture
def perf() -> PerfModel:
    return PerfModel(model_named("Qwen/Qwen3-32B"), gpu_named("H100"), 2)


def test_one_request_takes_its_prefill_then_one_decode_step_per_token(perf: PerfModel) -> None:
    loop, sink = EventLoop(), Sink()
    replica = Replica(loop, perf, SchedulerLimits(), sink)
    request = SimRequest(0.0, 1000, 4)
    replica.submit(request)
    loop.run()
    # By hand: the prefill step samples token 1; tokens 2-4 are decode steps at contexts
    # 1001, 1002 and 1003 (prompt plus the tokens generated so far).
    prefill = perf.step_time([(1000, 0)], [])
    decodes = [perf.step_time([], [context]) for context in (1001, 1002, 1003)]
    assert sink.first == [(request, pytest.approx(prefill))]
    assert sink.done == [(request, pytest.approx(prefill + sum(decodes)))]
    assert request.itl_s == pytest.approx(sum(decodes) / 3)
    assert replica.busy_s == pytest.approx(prefill + sum(decodes))
    assert replica.gauges() == (0, 0, 0.0)


def test_speed_divides_every_step(perf: PerfModel) -> None:
    loop, sink = EventLoop(), Sink()
    replica = Replica(loop, perf, SchedulerLimits(), sink, speed=12.0)
    replica.submit(SimRequest(0.0, 1000, 4))
    loop.run()
    steps = perf.step_time([(1000, 0)], []) + sum(
        perf.step_time([], [c]) for c in (1001, 1002, 1003)
    )
    assert sink.done[0][1] == pytest.approx(steps / 12)


def test_requests_batch_and_an_abort_frees_its_place(perf: PerfModel) -> None:
    loop, sink = EventLoop(), Sink()
    replica = Replica(loop, perf, SchedulerLimits(max_num_seqs=1), sink)
    first, second = SimRequest(0.0, 100, 50), SimRequest(0.0, 100, 50)
    replica.submit(first)
    replica.submit(second)
    assert replica.gauges()[:2] == (1, 1)  # one running, one waiting: max_num_seqs 1
    replica.abort(first)
    loop.run()
    assert [request for request, _ in sink.done] == [second]
    assert first.finished_at is None


def test_a_request_longer_than_the_cache_does_not_fit(perf: PerfModel) -> None:
    replica = Replica(EventLoop(), perf, SchedulerLimits(), Sink(), kv_blocks=10)
    assert replica.fits(SimRequest(0.0, 100, 60))  # 160 tokens = 10 blocks of 16
    assert not replica.fits(SimRequest(0.0, 100, 61))
