"""One replica replayed at both fidelities on the same workload, and the figures compared.

:func:`run_iteration` steps the emulator's scheduler (``tiergate.emulator.scheduler``) back
to back on an :class:`EventLoop`, the iteration-level reference; :func:`run_request_level`
replays the same requests on a :class:`FastReplica`. Both write ``first_token_at``,
``finished_at`` and ``itl_s`` on each :class:`SimRequest` and return the engine's busy
seconds; :func:`figures` sums them up (TTFT and ITL p50/p95, throughput) so that the
request-level model's error can be stated (``tests/sim/test_fast_replica.py``, the
simulator's fidelity bench).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from tiergate.emulator.scheduler import EngineRequest, Scheduler, SchedulerLimits
from tiergate.perf import PerfModel
from tiergate.sim.fast_replica import FastReplica
from tiergate.sim.loop import EventLoop
from tiergate.sim.request import SimRequest


def replay_requests(items: Iterable[tuple[float, int, int]]) -> list[SimRequest]:
    """Fresh :class:`SimRequest` objects from ``(arrival, prompt, output)`` triples."""
    return [SimRequest(at, prompt, output) for at, prompt, output in items]


def poisson_workload(
    lengths: Sequence[tuple[int, int]], rate: float, count: int, *, seed: int = 0
) -> list[tuple[float, int, int]]:
    """``count`` ``(arrival, prompt, output)`` triples arriving as a Poisson process at
    ``rate`` per second, lengths drawn (with replacement, from ``seed``) from ``lengths``."""
    if rate <= 0 or not lengths:
        raise ValueError("a Poisson workload needs a rate > 0 and some request lengths")
    rng = random.Random(seed)
    at, out = 0.0, []
    for _ in range(count):
        at += rng.expovariate(rate)
        prompt, output = lengths[rng.randrange(len(lengths))]
        out.append((at, prompt, output))
    return out


class _NoSink:
    """The requests themselves carry the results; nobody else listens."""

    def first_token(self, request: SimRequest, at: float) -> None:
        pass

    def finished(self, request: SimRequest, at: float) -> None:
        pass


def _arrive_in_order(
    loop: EventLoop, requests: Sequence[SimRequest], submit: Callable[[SimRequest], None]
) -> None:
    """Schedule arrivals one at a time (one pending arrival event, however long the trace)."""
    position = 0

    def arrive() -> None:
        nonlocal position
        submit(requests[position])
        position += 1
        if position < len(requests):
            loop.at(requests[position].arrival, arrive)

    if requests:
        loop.at(requests[0].arrival, arrive)


def run_request_level(
    perf: PerfModel,
    limits: SchedulerLimits,
    requests: Sequence[SimRequest],
    *,
    speed: float = 1.0,
    kv_blocks: int | None = None,
    seed: int = 0,
) -> float:
    """Replay ``requests`` (in arrival order) on one :class:`FastReplica`; returns its busy
    seconds."""
    loop = EventLoop()
    replica = FastReplica(
        loop, perf, limits, _NoSink(), speed=speed, kv_blocks=kv_blocks, rng=random.Random(seed)
    )
    _arrive_in_order(loop, requests, replica.submit)
    loop.run()
    return replica.busy_s


def run_iteration(
    perf: PerfModel,
    limits: SchedulerLimits,
    requests: Sequence[SimRequest],
    *,
    speed: float = 1.0,
    kv_blocks: int | None = None,
) -> float:
    """Replay ``requests`` on the emulator's scheduler, steps back to back while it has work
    (the iteration-level reference); returns the engine's busy seconds. ``itl_s`` is the
    mean over the tokens after the first."""
    loop = EventLoop()
    blocks = perf.kv_capacity_tokens // limits.block_size if kv_blocks is None else kv_blocks
    scheduler = Scheduler(perf, blocks, limits)
    replayed: list[SimRequest] = []
    stepping = False
    busy = 0.0

    def step() -> None:
        nonlocal stepping, busy
        planned = scheduler.schedule(loop.now)
        stepping = bool(planned.batch)
        if not stepping:
            return  # idle until the next arrival
        duration = planned.duration / speed
        busy += duration
        end = loop.now + duration

        def done() -> None:
            result = scheduler.complete(planned, end)
            for item in result.first_tokens:
                replayed[item.request_id].first_token_at = end
            for item in result.finished:
                request = replayed[item.request_id]
                request.finished_at = end
                first = request.first_token_at
                if first is not None and item.output_tokens > 1:
                    request.itl_s = (end - first) / (item.output_tokens - 1)
            step()

        loop.at(end, done)

    def submit(request: SimRequest) -> None:
        item = EngineRequest(len(replayed), request.prompt_tokens, request.output_tokens, loop.now)
        replayed.append(request)
        scheduler.add(item)
        if not stepping:
            step()

    _arrive_in_order(loop, requests, submit)
    loop.run()
    return busy


@dataclass(frozen=True, slots=True)
class Figures:
    """What one replay shows: latency percentiles (seconds), requests finished per second
    from the first arrival to the last finish, and engine seconds with work."""

    ttft_p50: float
    ttft_p95: float
    itl_p50: float
    itl_p95: float
    throughput_rps: float
    busy_s: float

    def error(self, reference: Figures) -> dict[str, float]:
        """Relative error of each figure against ``reference`` (0.1: 10% above it)."""
        return {
            name: getattr(self, name) / getattr(reference, name) - 1.0
            for name in self.__dataclass_fields__
        }


def figures(requests: Sequence[SimRequest], busy_s: float) -> Figures:
    """The :class:`Figures` of a finished replay (every request finished)."""
    ttft, itl, last = [], [], 0.0
    for request in requests:
        if request.first_token_at is None or request.finished_at is None:
            raise ValueError("a request of the replay did not finish")
        ttft.append(request.first_token_at - request.arrival)
        if request.itl_s is not None:
            itl.append(request.itl_s)
        last = max(last, request.finished_at)
    ttft.sort()
    itl.sort()
    span = last - requests[0].arrival if requests else 0.0
    return Figures(
        _percentile(ttft, 0.50),
        _percentile(ttft, 0.95),
        _percentile(itl, 0.50),
        _percentile(itl, 0.95),
        len(requests) / span if span > 0 else 0.0,
        busy_s,
    )


def _percentile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), of sorted values."""
    if not ordered:
        return math.nan
    at = q * (len(ordered) - 1)
    low = math.floor(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)
