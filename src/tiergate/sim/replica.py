"""One vLLM replica at iteration level, in virtual time: the emulator's scheduler on the loop.

The same pure scheduler the emulator runs on the wall clock (``tiergate.emulator.scheduler``:
continuous batching, chunked prefill, KV blocks, preemption), priced by the same performance
model (``tiergate.perf``). Steps are laid end to end while there is work; each step is one
event. Every sequence of a step advances at once, so no event exists per token or request.
"""

from __future__ import annotations

from typing import Protocol

from tiergate.emulator.scheduler import EngineRequest, Scheduler, SchedulerLimits, Step
from tiergate.perf import PerfModel
from tiergate.sim.loop import EventLoop, Timer
from tiergate.sim.request import SimRequest


class ReplicaSink(Protocol):
    """The gateway side of a replica: told of each request's first token and its end."""

    def first_token(self, request: SimRequest, at: float) -> None: ...

    def finished(self, request: SimRequest, at: float) -> None: ...


class SimEngine(Protocol):
    """One replica's engine as the gateway and the simulation drive it, at either fidelity
    (:class:`Replica` here, ``tiergate.sim.fast_replica.FastReplica`` at request level)."""

    slowdown: float

    @property
    def busy_s(self) -> float: ...

    @property
    def in_flight(self) -> int: ...

    def fits(self, request: SimRequest) -> bool: ...

    def submit(self, request: SimRequest) -> None: ...

    def abort(self, request: SimRequest) -> None: ...

    def stop(self) -> list[SimRequest]: ...

    def gauges(self) -> tuple[int, int, float]: ...


class Observer(Protocol):
    """What a replica reports, as vLLM's metrics count it: each first token (its prompt is
    then prefilled), the tokens each step generates, their gaps, and each request's end."""

    def first_token(self, ttft_s: float, prompt_tokens: int) -> None: ...

    def generated(self, tokens: int) -> None: ...

    def gaps(self, seconds: float, count: int) -> None: ...

    def finished(self) -> None: ...


class Replica:
    """One engine: a scheduler whose steps run on ``loop``, ``speed`` times faster than the
    performance model's (the demo's engines run 12 times faster), ``slowdown`` times slower
    while a slowdown fault lasts."""

    __slots__ = (
        "_by_id",
        "_next_id",
        "_step",
        "_timer",
        "busy_s",
        "loop",
        "max_model_len",
        "observer",
        "scheduler",
        "sink",
        "slowdown",
        "speed",
    )

    def __init__(
        self,
        loop: EventLoop,
        perf: PerfModel,
        limits: SchedulerLimits,
        sink: ReplicaSink,
        *,
        speed: float = 1.0,
        kv_blocks: int | None = None,
        observer: Observer | None = None,
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        blocks = (
            kv_blocks if kv_blocks is not None else perf.kv_capacity_tokens // limits.block_size
        )
        self.loop = loop
        self.scheduler = Scheduler(perf, blocks, limits)
        self.max_model_len = self.scheduler.capacity_tokens
        self.sink = sink
        self.speed = speed
        self.slowdown = 1.0
        self.observer = observer
        self.busy_s = 0.0  # engine-busy virtual seconds (steps with a batch)
        self._by_id: dict[int, SimRequest] = {}
        self._next_id = 0
        self._step: Step | None = None
        self._timer: Timer | None = None

    def fits(self, request: SimRequest) -> bool:
        """Whether the request's prompt and output fit the KV cache (vLLM answers 400 else)."""
        return request.prompt_tokens + request.output_tokens <= self.max_model_len

    def submit(self, request: SimRequest) -> None:
        """The request arrives at ``loop.now``."""
        self._next_id += 1
        engine = EngineRequest(
            self._next_id, request.prompt_tokens, max(1, request.output_tokens), self.loop.now
        )
        self.scheduler.add(engine)
        self._by_id[engine.request_id] = request
        request.replica_state = engine
        if self._step is None:
            self._start()

    def abort(self, request: SimRequest) -> None:
        """Drop a request (the gateway gave up on it, or the pod stops): no callbacks after."""
        engine = request.replica_state
        if isinstance(engine, EngineRequest):
            self._by_id.pop(engine.request_id, None)
            self.scheduler.abort(engine)
            request.replica_state = None

    def stop(self) -> list[SimRequest]:
        """The pod stops: drop every request and return them (the gateway fails or retries
        them)."""
        requests = list(self._by_id.values())
        for request in requests:
            self.abort(request)
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._step = None
        return requests

    def gauges(self) -> tuple[int, int, float]:
        """(running, waiting, KV usage 0-1) now, as vLLM's gauges show them."""
        scheduler = self.scheduler
        return len(scheduler.running), len(scheduler.waiting), scheduler.kv_usage

    @property
    def in_flight(self) -> int:
        return len(self._by_id)

    def _start(self) -> None:
        scheduler = self.scheduler
        if not scheduler.has_work():
            self._step = None
            return
        now = self.loop.now
        step = scheduler.schedule(now)
        if not step.batch:
            self._step = None  # nothing fits: an arrival or an abort restarts it
            return
        duration = step.duration * self.slowdown / self.speed
        self.busy_s += duration
        self._step = step
        self._timer = self.loop.at(now + duration, self._complete)

    def _complete(self) -> None:
        step = self._step
        assert step is not None
        end = self.loop.now
        result = self.scheduler.complete(step, end)
        by_id = self._by_id
        observer = self.observer
        sink = self.sink
        if observer is not None and result.emitted:
            observer.generated(len(result.emitted))
            # Most requests of a step last produced a token at the previous step's end: one
            # observation per distinct gap rather than one per token.
            gaps: dict[float, int] = {}
            for engine in result.emitted:
                previous = engine.prev_token_at
                if previous is not None:
                    gap = end - previous
                    gaps[gap] = gaps.get(gap, 0) + 1
            for gap, count in gaps.items():
                observer.gaps(gap, count)
        for engine in result.first_tokens:
            request = by_id.get(engine.request_id)
            if request is not None:
                request.first_token_at = end
                if observer is not None:
                    observer.first_token(end - engine.arrival, engine.prompt_tokens)
                sink.first_token(request, end)
        for engine in result.finished:
            request = by_id.pop(engine.request_id, None)
            if request is None:
                continue
            request.replica_state = None
            first = engine.first_token_at
            if first is not None and engine.num_output > 1:
                request.itl_s = (end - first) / (engine.num_output - 1)
            request.finished_at = end
            if observer is not None:
                observer.finished()
            sink.finished(request, end)
        self._start()
