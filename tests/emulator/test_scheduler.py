"""The pure scheduler in virtual time: batching, chunked prefill, KV blocks, preemption."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tiergate.emulator import EngineRequest, Scheduler, SchedulerLimits, State, Step
from tiergate.perf import PerfModel, gpu_named, model_named


class FlatCost:
    """1 ms per step plus 1 µs per token; records what it was asked to price."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[tuple[int, int]], list[int]]] = []

    def step_time(
        self, prefill: Sequence[tuple[int, int]], decode_contexts: Sequence[int]
    ) -> float:
        self.calls.append((list(prefill), list(decode_contexts)))
        return 0.001 + 1e-6 * (sum(n for n, _ in prefill) + len(decode_contexts))


def request(request_id: int, prompt: int, output: int, arrival: float = 0.0) -> EngineRequest:
    return EngineRequest(request_id, prompt, output, arrival)


def run_step(scheduler: Scheduler, now: float) -> tuple[Step, float]:
    step = scheduler.schedule(now)
    result_end = now + step.duration
    scheduler.complete(step, result_end)
    return step, result_end


def run_until_idle(scheduler: Scheduler, now: float = 0.0, max_steps: int = 100_000) -> float:
    for _ in range(max_steps):
        if not scheduler.has_work():
            return now
        _, now = run_step(scheduler, now)
    pytest.fail("the scheduler did not drain")


def batch_of(step: Step) -> dict[int, int]:
    return {r.request_id: n for r, n in step.batch}


def test_long_prompt_is_prefilled_in_chunks_then_decoded() -> None:
    scheduler = Scheduler(FlatCost(), 1000, SchedulerLimits(max_num_batched_tokens=100))
    long = request(1, 250, 3)
    scheduler.add(long)
    chunks = [batch_of(run_step(scheduler, float(i))[0]) for i in range(3)]
    assert chunks == [{1: 100}, {1: 100}, {1: 50}]
    assert long.num_output == 1  # the last chunk samples the first token
    assert long.first_token_at is not None
    assert long.first_token_at > 2.0
    run_until_idle(scheduler, 3.0)
    assert long.state is State.FINISHED
    assert long.num_output == 3


def test_decodes_are_scheduled_before_prefill_chunks() -> None:
    cost = FlatCost()
    scheduler = Scheduler(cost, 1000, SchedulerLimits(max_num_batched_tokens=100))
    first = request(1, 10, 50)
    scheduler.add(first)
    run_step(scheduler, 0.0)  # prefill: first token
    scheduler.add(request(2, 500, 5))
    step, _ = run_step(scheduler, 1.0)
    # One decode token for the running request, the rest of the budget for the new prompt.
    assert batch_of(step) == {1: 1, 2: 99}
    assert cost.calls[-1] == ([(99, 0)], [11])


def test_max_num_seqs_bounds_the_batch_and_the_queue_is_fifo() -> None:
    scheduler = Scheduler(FlatCost(), 1000, SchedulerLimits(max_num_seqs=2))
    requests = [request(i, 5, 4) for i in range(1, 5)]
    for r in requests:
        scheduler.add(r)
    step, now = run_step(scheduler, 0.0)
    assert sorted(batch_of(step)) == [1, 2]
    assert [r.request_id for r in scheduler.waiting] == [3, 4]
    run_until_idle(scheduler, now)
    first_tokens = [r.first_token_at for r in requests]
    assert first_tokens[0] == first_tokens[1] < first_tokens[2] == first_tokens[3]


def test_kv_blocks_follow_the_context_and_are_freed_at_the_end() -> None:
    scheduler = Scheduler(FlatCost(), 10, SchedulerLimits(block_size=16))
    r = request(1, 16, 3)
    scheduler.add(r)
    run_step(scheduler, 0.0)
    assert r.blocks == 1
    assert scheduler.kv_usage == pytest.approx(0.1)
    run_step(scheduler, 1.0)  # the 17th token needs a second block
    assert r.blocks == 2
    assert scheduler.kv_usage == pytest.approx(0.2)
    run_until_idle(scheduler, 2.0)
    assert scheduler.free_blocks == 10
    assert scheduler.kv_usage == 0.0


def test_full_cache_preempts_the_newest_request_which_recomputes() -> None:
    # 4 blocks of 16 tokens; two requests of 16 + 20 tokens need 3 blocks each at the end.
    scheduler = Scheduler(FlatCost(), 4, SchedulerLimits(block_size=16))
    old, new = request(1, 16, 20), request(2, 16, 20)
    scheduler.add(old)
    scheduler.add(new)
    preempted: list[int] = []
    now = 0.0
    for _ in range(200):
        if not scheduler.has_work():
            break
        step, now = run_step(scheduler, now)
        preempted += [r.request_id for r in step.preempted]
    assert preempted
    assert set(preempted) == {2}  # always the most recently admitted
    assert new.preemptions == len(preempted)
    assert old.preemptions == 0
    assert old.num_output == new.num_output == 20
    assert old.state is new.state is State.FINISHED
    assert scheduler.free_blocks == 4


def test_preempted_request_goes_to_the_front_of_the_queue() -> None:
    scheduler = Scheduler(FlatCost(), 4, SchedulerLimits(block_size=16, max_num_seqs=2))
    a, b, c = request(1, 16, 30), request(2, 16, 30), request(3, 16, 30)
    for r in (a, b, c):
        scheduler.add(r)
    now = 0.0
    for _ in range(100):
        step, now = run_step(scheduler, now)
        if step.preempted:
            break
    assert [r.request_id for r in scheduler.waiting] == [2, 3]
    assert b.num_computed == 0
    assert b.blocks == 0


def test_abort_frees_blocks_at_once() -> None:
    scheduler = Scheduler(FlatCost(), 10, SchedulerLimits())
    r, queued = request(1, 100, 10), request(2, 10, 10)
    scheduler.add(r)
    run_step(scheduler, 0.0)
    scheduler.add(queued)
    scheduler.abort(r)
    scheduler.abort(queued)
    assert r.state is State.ABORTED
    assert queued.state is State.ABORTED
    assert scheduler.free_blocks == 10
    assert not scheduler.has_work()


def test_request_larger_than_the_cache_is_refused() -> None:
    scheduler = Scheduler(FlatCost(), 2, SchedulerLimits(block_size=16))
    with pytest.raises(ValueError, match="exceed the KV cache"):
        scheduler.add(request(1, 30, 3))


def test_saturated_throughput_matches_the_performance_model() -> None:
    """Under unbounded load the scheduler generates within 20% of the perf model's figure."""
    perf = PerfModel(model_named("meta-llama/Llama-3.1-8B-Instruct"), gpu_named("H100"))
    limits = SchedulerLimits()
    scheduler = Scheduler(perf, perf.kv_capacity_tokens // limits.block_size, limits)
    prompt, output = 500, 200
    next_id = 0
    now = 0.0
    generated: list[tuple[float, int]] = []
    for _ in range(1500):
        while len(scheduler.waiting) < 64:  # always more work than fits
            next_id += 1
            scheduler.add(request(next_id, prompt, output, now))
        step = scheduler.schedule(now)
        result = scheduler.complete(step, now + step.duration)
        now = result.end
        generated.append((now, len(result.emitted)))
    # Skip the ramp-up (the first wave of requests starting together).
    window = generated[500:]
    measured = sum(n for _, n in window) / (window[-1][0] - generated[499][0])
    predicted = perf.saturated_throughput(prompt, output, limits.max_num_seqs)
    assert measured == pytest.approx(predicted, rel=0.2)
