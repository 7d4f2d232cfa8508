"""The engine of one replica: drives the pure scheduler on the wall clock, ``speed`` times faster.

One asyncio task per replica runs steps back to back while there is work: schedule a batch,
sleep for the step's model time divided by ``speed``, complete it, record metrics and wake the
handlers of the requests that advanced. Every sequence of a step advances at once; no task or
timer exists per token or per request.

Engine time ("model time") runs at ``speed`` times the wall clock. Steps are laid end to end in
engine time, so that the timer's coarseness (about a millisecond) never accumulates: a step
that wakes late is followed by one that starts where it should have ended. Only when the engine
falls behind the wall clock by more than ``lag_tolerance_s`` (the CPU cannot keep up, or the
engine was idle) does it start the next step at the wall clock's time instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from tiergate.emulator.metrics import VllmMetrics
from tiergate.emulator.scheduler import EngineRequest, Scheduler, State

# Below this many wall seconds a step's sleep is skipped (the loop only yields): sleeping
# would overshoot by the timer's granularity anyway, and steps are kept on time in engine time.
_MIN_SLEEP_S = 0.0005


class RequestHandle:
    """A handler's view of one request in the engine: the request and a way to wait on it."""

    __slots__ = ("_waiter", "request", "streaming")

    def __init__(self, request: EngineRequest, *, streaming: bool) -> None:
        self.request = request
        self.streaming = streaming  # woken on every token, else only when it ends
        self._waiter: asyncio.Future[None] | None = None

    async def wait(self) -> None:
        """Until the request produced a token (streaming) or ended since this call began."""
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Engine:
    """One emulated vLLM engine: a scheduler, its metrics and the task that steps it."""

    def __init__(
        self,
        scheduler: Scheduler,
        metrics: VllmMetrics,
        *,
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        lag_tolerance_s: float = 0.02,
    ) -> None:
        self.scheduler = scheduler
        self.metrics = metrics
        self.speed = speed
        self._clock = clock
        self._origin = clock()
        self._lag_tolerance = lag_tolerance_s * speed
        self._handles: dict[int, RequestHandle] = {}
        self._next_id = 0
        self._step_end: float | None = None  # engine time the running step ends at
        self._work = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Steps that started at the wall clock's time because the engine had fallen behind
        # (by more than the tolerance) while busy: how often the CPU could not keep up.
        self.catch_ups = 0

    def now(self) -> float:
        """Engine time: model seconds since the engine started, from the wall clock."""
        return (self._clock() - self._origin) * self.speed

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="emulator-engine")

    async def stop(self) -> None:
        """Stop stepping; every request still in the engine ends as aborted."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for handle in list(self._handles.values()):
            self.abort(handle)

    def submit(
        self, prompt_tokens: int, output_tokens: int, finish_reason: str, *, streaming: bool
    ) -> RequestHandle:
        """Queue a request; raises ValueError when it could never fit in the KV cache."""
        now = self.now()
        if self._step_end is not None:
            # While behind the wall clock, the engine has not reached ``now`` yet: the request
            # arrives when the running step ends, so no latency comes out negative.
            now = min(now, self._step_end)
        self._next_id += 1
        request = EngineRequest(self._next_id, prompt_tokens, output_tokens, now, finish_reason)
        self.scheduler.add(request)
        handle = RequestHandle(request, streaming=streaming)
        self._handles[request.request_id] = handle
        self._publish_load()
        self._work.set()
        return handle

    def abort(self, handle: RequestHandle) -> None:
        """Drop a request that has not finished (its client went away); no-op otherwise."""
        request = handle.request
        self._handles.pop(request.request_id, None)
        if request.finished:
            return
        self.scheduler.abort(request)
        self.metrics.aborted(request)
        self._publish_load()
        self._work.set()  # freed blocks may let a waiting request in
        handle.wake()

    async def _run(self) -> None:
        scheduler = self.scheduler
        previous_end: float | None = None
        while True:
            if not scheduler.has_work():
                previous_end = None
                self._publish_load()  # idle: the last step's finished requests are gone
                self._work.clear()
                await self._work.wait()
                continue
            now = self.now()
            start = now
            if previous_end is not None:
                if now - previous_end <= self._lag_tolerance:
                    start = previous_end  # on time (or a little ahead): keep steps end to end
                else:
                    self.catch_ups += 1
            step = scheduler.schedule(start)
            self._publish_load()
            if not step.batch:
                # Work that cannot run (nothing fits): wait for an arrival or an abort.
                previous_end = None
                self._work.clear()
                await self._work.wait()
                continue
            end = start + step.duration
            self._step_end = end
            try:
                delay = (end - self.now()) / self.speed
                await asyncio.sleep(delay if delay > _MIN_SLEEP_S else 0)
            finally:
                self._step_end = None
            result = scheduler.complete(step, end)
            self.metrics.record(step, result)
            handles = self._handles
            for request in result.emitted:
                handle = handles.get(request.request_id)
                if handle is not None and (handle.streaming or request.state is not State.RUNNING):
                    handle.wake()
            for request in result.finished:
                handles.pop(request.request_id, None)
            previous_end = end

    def _publish_load(self) -> None:
        scheduler = self.scheduler
        self.metrics.load(len(scheduler.running), len(scheduler.waiting), scheduler.kv_usage)
