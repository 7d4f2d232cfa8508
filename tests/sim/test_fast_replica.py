"""The request-level replica: hand-checked times on small cases, admission and abort, the
gauges, determinism, and its error against the iteration level on the same workloads.

The fidelity bounds below are what the model achieves with some margin, measured on this
code (request level against the emulator's scheduler, Qwen3-32B on 2 x H100, TP 2, vLLM's
default limits):

=================  ========  ========  =======  =======  ==========  ======
workload           TTFT p50  TTFT p95  ITL p50  ITL p95  throughput  busy
=================  ========  ========  =======  =======  ==========  ======
Azure code, 2,000  -5.7%     -2.8%     -1.6%    -3.4%    -0.0%       +6.1%
Poisson, 50%       -0.4%     -3.8%     +1.1%    +20.3%   -0.4%       +3.3%
Poisson, 90%       -6.2%     -11.4%    +13.1%   -4.4%    -3.0%       +3.1%
=================  ========  ========  =======  =======  ==========  ======
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

from tiergate.emulator.scheduler import EngineRequest, Scheduler, SchedulerLimits
from tiergate.perf import PerfModel, gpu_named, model_named
from tiergate.sim import read_trace
from tiergate.sim.fast_replica import FastReplica
from tiergate.sim.loop import EventLoop
from tiergate.sim.replay import (
    Figures,
    figures,
    poisson_workload,
    replay_requests,
    run_iteration,
    run_request_level,
)
from tiergate.sim.request import SimRequest

TRACE = Path(__file__).parents[2] / "examples" / "traces" / "AzureLLMInferenceTrace_code.csv"
LIMITS = SchedulerLimits()  # vLLM's defaults: 256 sequences, 8,192 tokens a step, 16-token blocks


@pytest.fixture(scope="module")
def perf() -> PerfModel:
    """The demo's engine: Qwen3-32B (BF16) on 2 x H100, tensor parallel 2."""
    return PerfModel(model_named("Qwen/Qwen3-32B"), gpu_named("H100"), 2)


class Sink:
    """Records what the gateway side is told, checking that ``at`` is the loop's time."""

    def __init__(self, loop: EventLoop) -> None:
        self.loop = loop
        self.events: list[tuple[str, SimRequest, float]] = []

    def first_token(self, request: SimRequest, at: float) -> None:
        assert at == self.loop.now
        self.events.append(("first", request, at))

    def finished(self, request: SimRequest, at: float) -> None:
        assert at == self.loop.now
        assert request.first_token_at is not None
        self.events.append(("finished", request, at))


def replica(
    perf: PerfModel, limits: SchedulerLimits = LIMITS, **options: float | int
) -> tuple[EventLoop, FastReplica, Sink]:
    loop = EventLoop()
    sink = Sink(loop)
    return loop, FastReplica(loop, perf, limits, sink, **options), sink  # type: ignore[arg-type]


def arrive(loop: EventLoop, fast: FastReplica, request: SimRequest) -> None:
    loop.at(request.arrival, lambda: fast.submit(request))


# -- small cases against hand computations -----------------------------------------------------


def test_a_lone_request_is_its_prefill_step_then_one_decode_step_a_token(
    perf: PerfModel,
) -> None:
    loop, fast, sink = replica(perf)
    request = SimRequest(0.0, 2048, 11)
    arrive(loop, fast, request)
    loop.run()
    # Idle engine: one step prefills the 2,048-token prompt (a 2,048-token step, ~0.113 s);
    # then 10 decode steps of one sequence at ~2,053 tokens of context (~0.0149 s each).
    assert request.first_token_at == pytest.approx(perf.prefill_time(2048), rel=0.01)
    decode = perf.decode_step_time([2048 + 5])
    assert request.itl_s == pytest.approx(decode, rel=0.01)
    assert request.finished_at == pytest.approx(request.first_token_at + 10 * request.itl_s)
    # The same request on the emulator's scheduler.
    reference = SimRequest(0.0, 2048, 11)
    run_iteration(perf, LIMITS, [reference])
    assert request.first_token_at == pytest.approx(reference.first_token_at, rel=0.01)
    assert request.finished_at == pytest.approx(reference.finished_at, rel=0.01)
    # The engine had work from the arrival to the finish; the sink heard both, in order.
    assert fast.busy_s == pytest.approx(request.finished_at)
    assert [(kind, at) for kind, _, at in sink.events] == [
        ("first", request.first_token_at),
        ("finished", request.finished_at),
    ]
    assert fast.gauges() == (0, 0, 0.0)


def test_a_one_token_answer_finishes_with_its_first_token(perf: PerfModel) -> None:
    loop, fast, sink = replica(perf)
    request = SimRequest(0.0, 512, 1)
    arrive(loop, fast, request)
    loop.run()
    assert (
        request.first_token_at
        == request.finished_at
        == pytest.approx(perf.prefill_time(512), rel=0.01)
    )
    assert request.itl_s is None  # no second token: no inter-token latency
    assert [kind for kind, _, _ in sink.events] == ["first", "finished"]


def test_prompts_waiting_for_the_same_step_get_their_first_token_together(
    perf: PerfModel,
) -> None:
    # The first prompt's step runs 0-0.11 s; the next two arrive during it and share the next
    # step (4,000 + 1 decode tokens, ~0.27 s), as vLLM fills a step from its waiting queue.
    workload = [(0.0, 2000, 5), (0.05, 2000, 5), (0.06, 2000, 5)]
    fast = replay_requests(workload)
    run_request_level(perf, LIMITS, fast)
    reference = replay_requests(workload)
    run_iteration(perf, LIMITS, reference)
    assert fast[1].first_token_at == fast[2].first_token_at
    assert reference[1].first_token_at == reference[2].first_token_at
    for mine, theirs in zip(fast, reference, strict=True):
        assert mine.first_token_at == pytest.approx(theirs.first_token_at, rel=0.02)
        assert mine.finished_at == pytest.approx(theirs.finished_at, rel=0.02)


def test_speed_divides_every_time(perf: PerfModel) -> None:
    workload = [(0.0, 2000, 30), (0.01, 700, 80), (0.02, 3000, 5)]
    slow = replay_requests(workload)
    busy = run_request_level(perf, LIMITS, slow)
    fast = replay_requests((at / 12, p, o) for at, p, o in workload)
    fast_busy = run_request_level(perf, LIMITS, fast, speed=12)
    for one, twelve in zip(slow, fast, strict=True):
        assert twelve.first_token_at == pytest.approx(one.first_token_at / 12)  # type: ignore[operator]
        assert twelve.finished_at == pytest.approx(one.finished_at / 12)  # type: ignore[operator]
    assert fast_busy == pytest.approx(busy / 12)


# -- admission, abort, gauges -------------------------------------------------------------------


def test_a_full_batch_queues_fifo_and_admits_when_a_request_leaves(perf: PerfModel) -> None:
    loop, fast, _ = replica(perf, SchedulerLimits(max_num_seqs=1))
    requests = [SimRequest(0.0, 1000, 20) for _ in range(3)]
    for request in requests:
        fast.submit(request)
    assert fast.gauges()[:2] == (1, 2)  # one running, two waiting: vLLM's running/waiting
    loop.run()
    first, second, third = requests
    assert first.finished_at is not None
    assert second.finished_at is not None
    # Each starts its prefill when the one before leaves: one sequence at a time, in order.
    assert second.first_token_at == pytest.approx(
        first.finished_at + perf.prefill_time(1000), rel=0.01
    )
    assert third.first_token_at == pytest.approx(
        second.finished_at + perf.prefill_time(1000), rel=0.01
    )


def test_kv_blocks_bound_the_batch(perf: PerfModel) -> None:
    # 1,000 + 24 tokens are 64 blocks of 16; 100 blocks hold one such request, not two.
    loop, fast, _ = replica(perf, kv_blocks=100)
    one, two = SimRequest(0.0, 1000, 24), SimRequest(0.0, 1000, 24)
    fast.submit(one)
    fast.submit(two)
    assert fast.gauges()[:2] == (1, 1)
    loop.run()
    assert two.first_token_at is not None
    assert one.finished_at is not None
    assert two.first_token_at > one.finished_at
    with pytest.raises(ValueError, match="exceed the KV cache"):
        fast.submit(SimRequest(0.0, 1600, 1))  # 1,601 tokens > 100 blocks of 16


def test_an_aborted_request_frees_its_room_and_hears_nothing_more(perf: PerfModel) -> None:
    loop, fast, sink = replica(perf, SchedulerLimits(max_num_seqs=1))
    running, queued, last = (SimRequest(0.0, 1000, 200) for _ in range(3))
    for request in (running, queued, last):
        fast.submit(request)
    fast.abort(queued)  # the gateway gave up on it while it waited
    assert fast.gauges()[:2] == (1, 1)
    loop.run(until=1.0)  # the first one is decoding by now (its prefill takes ~0.06 s)
    assert running.first_token_at is not None
    assert running.finished_at is None
    fast.abort(running)  # its pod stops, say
    assert last.first_token_at is None
    loop.run()
    told = {id(request) for _, request, _ in sink.events}
    assert id(queued) not in told
    assert [kind for kind, request, _ in sink.events if request is running] == ["first"]
    # The last one was admitted at the abort (t = 1 s) and prefilled then.
    assert last.first_token_at == pytest.approx(1.0 + perf.prefill_time(1000), rel=0.02)
    assert last.finished_at is not None
    assert fast.gauges() == (0, 0, 0.0)


def test_a_prompt_waits_until_its_prefill_starts_as_vllm_counts_it(perf: PerfModel) -> None:
    # Ten 4,000-token prompts at once: the first starts a step of its own at once; the others
    # wait for it, then the next step takes prompts 2 and 3 and the first 191 tokens of 4
    # (8,192 tokens less the first request's decode).
    loop, fast, _ = replica(perf)
    requests = [SimRequest(0.0, 4000, 10) for _ in range(10)]
    for request in requests:
        fast.submit(request)
    assert fast.gauges()[:2] == (1, 9)
    first_step = perf.prefill_time(4000)
    loop.run(until=first_step * 1.05)
    assert fast.gauges()[:2] == (4, 6)
    # The emulator's scheduler, driven the same way, shows the same counts.
    scheduler = Scheduler(perf, perf.kv_capacity_tokens // 16, LIMITS)
    engine = [EngineRequest(i, 4000, 10, 0.0) for i in range(10)]
    scheduler.add(engine[0])
    step = scheduler.schedule(0.0)
    for item in engine[1:]:
        scheduler.add(item)
    assert (len(scheduler.running), len(scheduler.waiting)) == (1, 9)
    scheduler.complete(step, step.duration)
    scheduler.schedule(step.duration)
    assert (len(scheduler.running), len(scheduler.waiting)) == (4, 6)


def test_a_stopped_replica_hands_back_what_it_held_and_goes_quiet(perf: PerfModel) -> None:
    loop, fast, sink = replica(perf, SchedulerLimits(max_num_seqs=2))
    requests = [SimRequest(0.0, 1000, 400) for _ in range(4)]
    for request in requests:
        fast.submit(request)
    loop.run(until=2.0)  # two decode, two wait; nothing has finished (400 tokens take ~6 s)
    heard = len(sink.events)
    busy = fast.busy_s
    assert fast.stop() == requests
    assert fast.gauges() == (0, 0, 0.0)
    loop.run()
    assert len(sink.events) == heard  # no first token, no finish, after the stop
    assert fast.busy_s == pytest.approx(busy)  # the engine had work up to the stop, then none
    assert all(request.finished_at is None for request in requests)


def test_kv_usage_counts_the_prompt_and_the_tokens_generated_so_far(perf: PerfModel) -> None:
    loop, fast, _ = replica(perf, kv_blocks=1000)
    request = SimRequest(0.0, 1600, 401)
    arrive(loop, fast, request)
    loop.run(until=0.2)  # past its first token (~0.09 s)
    assert request.first_token_at is not None
    assert request.itl_s is None
    first = request.first_token_at
    loop.run(until=first + 1.0)
    running, waiting, usage = fast.gauges()
    # Alone, it gets a token per decode step of one sequence at ~1,800 tokens of context.
    generated = 1.0 / perf.decode_step_time([1800])
    # (1,600 prompt tokens + those generated) / 16 per block, + half a block, of 1,000 blocks.
    assert (running, waiting) == (1, 0)
    assert usage == pytest.approx(((1600 + generated) / 16 + 0.5) / 1000, rel=0.01)


def test_a_replay_is_deterministic_for_a_seed(perf: PerfModel) -> None:
    lengths = [(2000, 30), (500, 200), (4000, 10), (100, 5)]
    workload = poisson_workload(lengths, 5.0, 300, seed=7)

    def finishes(seed: int) -> list[float | None]:
        requests = replay_requests(workload)
        run_request_level(perf, LIMITS, requests, seed=seed)
        return [request.finished_at for request in requests]

    assert finishes(1) == finishes(1)
    assert finishes(1) != finishes(2)  # the prompts a short answer meets are drawn


# -- fidelity against the iteration level, on the same workload ---------------------------------


@pytest.fixture(scope="module")
def azure() -> list[tuple[float, int, int]]:
    """The first 2,000 requests of the Azure code trace (~2,000 prompt, ~30 output tokens)."""
    rows = itertools.islice(read_trace(TRACE), 2000)
    return [(row.arrival_s, row.prompt_tokens, row.output_tokens) for row in rows]


def both(perf: PerfModel, workload: list[tuple[float, int, int]]) -> tuple[Figures, Figures]:
    reference = replay_requests(workload)
    iteration = figures(reference, run_iteration(perf, LIMITS, reference))
    requests = replay_requests(workload)
    request_level = figures(requests, run_request_level(perf, LIMITS, requests))
    return iteration, request_level


BOUNDS = {  # the largest relative error allowed, per figure (the table above, with margin)
    "ttft_p50": 0.10,
    "ttft_p95": 0.15,
    "itl_p50": 0.20,
    "itl_p95": 0.25,
    "throughput_rps": 0.05,
    "busy_s": 0.10,
}


def assert_close(iteration: Figures, request_level: Figures) -> None:
    errors = request_level.error(iteration)
    too_far = {name: round(error, 3) for name, error in errors.items() if abs(error) > BOUNDS[name]}
    assert not too_far, f"request level against iteration level: {too_far}"


def test_request_level_matches_iteration_level_on_the_azure_code_trace(
    perf: PerfModel, azure: list[tuple[float, int, int]]
) -> None:
    iteration, request_level = both(perf, azure)
    # Its bursts (up to ~23 requests/s against ~8.5 that the engine serves) queue prompts
    # for seconds at both fidelities: this is the prefill-bound regime.
    assert iteration.ttft_p50 > 2.0
    assert request_level.ttft_p50 > 2.0
    assert_close(iteration, request_level)


@pytest.mark.parametrize("load", [0.5, 0.9])
def test_request_level_matches_iteration_level_on_a_poisson_load(
    perf: PerfModel, azure: list[tuple[float, int, int]], load: float
) -> None:
    lengths = [(prompt, output) for _, prompt, output in azure]
    mean_in = sum(p for p, _ in lengths) / len(lengths)
    mean_out = sum(o for _, o in lengths) / len(lengths)
    # Saturation by the performance model: ~225 output tokens/s, ~8.5 requests/s.
    saturated = perf.saturated_throughput(round(mean_in), round(mean_out)) / mean_out
    workload = poisson_workload(lengths, load * saturated, 2000, seed=1)
    iteration, request_level = both(perf, workload)
    # Both serve what arrives (throughput is the arrival rate, within the bound).
    assert iteration.throughput_rps == pytest.approx(load * saturated, rel=0.2)
    assert_close(iteration, request_level)


def test_figures_are_the_percentiles_of_what_the_replay_wrote() -> None:
    requests = replay_requests((float(at), 100, 3) for at in range(5))
    for index, request in enumerate(requests):
        request.first_token_at = request.arrival + 0.1 * (index + 1)  # TTFT 0.1 .. 0.5 s
        request.itl_s = 0.01 * (index + 1)  # 0.01 .. 0.05 s
        request.finished_at = request.first_token_at + 2 * request.itl_s
    result = figures(requests, busy_s=4.0)
    # Linear between ranks: p50 is the middle value, p95 is 0.8 of the way from 4th to 5th.
    assert result.ttft_p50 == pytest.approx(0.3)
    assert result.ttft_p95 == pytest.approx(0.4 + 0.8 * 0.1)
    assert result.itl_p50 == pytest.approx(0.03)
    # 5 requests from the first arrival (0 s) to the last finish (4 + 0.5 + 0.1 s).
    assert result.throughput_rps == pytest.approx(5 / 4.6)
    assert math.isclose(result.error(result)["busy_s"], 0.0)
