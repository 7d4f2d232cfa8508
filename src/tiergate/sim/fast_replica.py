"""The request-level engine: an analytic model of one vLLM replica, for weeks of traffic.

The iteration-level replica steps the emulator's scheduler (``tiergate.emulator.scheduler``)
one engine step at a time; :class:`FastReplica` has the same interface and answers each
request with O(1) arithmetic and two events (first token, finish) on the simulator's loop:
no event per token or per step. Its times come from the same performance model
(``tiergate.perf.PerfModel``), through three tables built from it:

- ``decode(d, L)``: a decode-only step of ``d`` sequences at mean context ``L`` (cached by
  ``d`` and ``L`` in buckets of 1/8 of an octave, so that the hot path is a dictionary
  look-up);
- ``extra(c)``: what prefilling ``c`` prompt tokens adds to a step, ``prefill_time(c) -
  prefill_time(1)`` (16-token buckets up to ``max_num_batched_tokens``). A step with ``c``
  prefill tokens and ``d`` decodes costs ``decode(d, L) + extra(c)``: exact for a decode-only
  step and within a few per cent of the roofline's ``max(compute, memory)`` otherwise, because
  a chunk that matters is compute-bound and the decodes' cost is then their memory floor;
- ``full(d) = decode(d, L) + extra(B - d)``: a step whose token budget ``B`` is full.

A request is **admitted** when the batch has a free sequence slot (``max_num_seqs``) and KV
blocks for its prompt plus output (reserved at once: vLLM allocates as a request grows and
preempts when the pool runs dry; reserving the whole request never preempts, which keeps the
model event-free). Otherwise it waits FIFO and is admitted when a finish or abort frees room,
as vLLM's FCFS queue does. At admission, with ``d`` sequences in the batch afterwards:

- **time to first token**: prefills run one after the other (vLLM schedules waiting prompts
  FIFO into each step's budget), tracked as the time ``prefill_end`` at which the prefill work
  already admitted is done. A request arriving while the engine decodes waits for the running
  step to end (half a decode step on average); if prefills are still under way it waits for
  them instead. Its own prefill then takes ``decode(d, L) + extra(p)`` (``ceil(p / (B - d))``
  steps for a prompt longer than the budget left by the decodes: chunked prefill); behind a
  backlog it is packed with the prompts before it and adds ``extra(p) + decode(d, L) · p /
  (B - d)``, its share of full steps.
- **inter-token latency**: a running request gets one token per step. The engine spends a
  share ``rho`` of its time on prefill work (the ``extra`` of prompts admitted, an exponential
  average over ``load_window_s``) and the rest on decode steps, so steps come at
  ``(1 - rho) / decode(d, L)`` per second: ``ITL = decode(d, L) / (1 - rho)``, at most
  ``full(d)`` (prefill-bound: every step full). That is how a prefill-heavy trace (the Azure
  code trace: ~2,000 prompt tokens for ~30 output) saturates where the iteration model does.
- **finish** = first token + (output - 1) · ITL. Times are fixed at admission: a later
  arrival does not slow requests already in the batch (the load average anticipates it).

``speed`` divides every step time (and the load window), as the emulator's ``speed`` does.
Gauges read what vLLM's ``/metrics`` would show: running (admitted, prefills included),
waiting, and KV usage from the tokens each running request holds by now (its prompt, plus one
token per ITL since its first token).
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from tiergate.emulator.scheduler import EngineRequest, Scheduler, SchedulerLimits
from tiergate.perf import PerfModel
from tiergate.sim.loop import EventLoop, Timer

_EXTRA_BUCKET = 16  # tokens: granularity of the prefill-cost table
_RECENT = 64  # prompts remembered for the prefills a short answer meets
_SAMPLED_HITS = 16  # above this many, their mean stands for them
_RHO_MAX = 0.999  # beyond this the load is prefill-bound; the full-step cap applies anyway


class SimRequest(Protocol):
    """What a replica reads and writes on a request (the simulator's request has these)."""

    prompt_tokens: int
    output_tokens: int
    arrival: float
    first_token_at: float | None
    finished_at: float | None
    itl_s: float | None
    replica_state: object | None


class ReplicaSink(Protocol):
    """The simulator's gateway side: told of each request's first token and its end."""

    def first_token(self, request: SimRequest, at: float) -> None: ...

    def finished(self, request: SimRequest, at: float) -> None: ...


class _Admitted:
    """A request's bookkeeping inside the batch (kept in ``request.replica_state``)."""

    __slots__ = (
        "blocks",
        "context",
        "done",
        "finish",
        "first",
        "prompt",
        "rate",
        "since",
        "steps",
        "ttft",
    )

    def __init__(self, blocks: int, context: int, prompt: int, ttft: float, steps: int) -> None:
        self.blocks = blocks
        self.context = context  # prompt + output / 2: its mean context while it decodes
        self.prompt = prompt
        self.ttft = ttft  # time of its first token
        self.steps = steps  # prefill steps queued up to its own last one
        self.first: Timer | None = None
        self.finish: Timer | None = None  # its finish, or its next plan
        # Tokens generated: ``done`` at ``since``, then ``rate`` per second (the KV gauge).
        self.done = 0
        self.since = 0.0
        self.rate = 0.0


class _Load:
    """Prompts admitted and their prefill seconds, exponentially averaged over ``window``."""

    __slots__ = ("count", "last", "seconds", "window")

    def __init__(self, now: float, window: float) -> None:
        self.window = window
        self.last = now
        self.count = 0.0
        self.seconds = 0.0

    def add(self, now: float, seconds: float) -> None:
        decay = math.exp((self.last - now) / self.window)
        self.count = self.count * decay + 1.0
        self.seconds = self.seconds * decay + seconds
        self.last = now

    def at(self, now: float) -> tuple[float, float]:
        """(prompts per second, mean prefill seconds of one) as of ``now``."""
        if not self.count:
            return 0.0, 0.0
        decay = math.exp((self.last - now) / self.window)
        return self.count * decay / self.window, self.seconds / self.count


class _Queued:
    """A request waiting for room; ``aborted`` lets an abort skip it lazily (O(1))."""

    __slots__ = ("aborted", "blocks")

    def __init__(self, blocks: int) -> None:
        self.blocks = blocks
        self.aborted = False


class FastReplica:
    """One vLLM replica at request level: admission, TTFT, ITL and finish from the perf model.

    ``kv_blocks`` defaults to what the performance model leaves for the KV cache, in blocks
    of ``limits.block_size``; ``load_window_s`` is the span (engine seconds) of the prefill
    load average that stretches the ITL.
    """

    def __init__(
        self,
        loop: EventLoop,
        perf: PerfModel,
        limits: SchedulerLimits,
        sink: ReplicaSink,
        *,
        speed: float = 1.0,
        kv_blocks: int | None = None,
        load_window_s: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        if not load_window_s > 0:
            raise ValueError(f"load_window_s must be positive, got {load_window_s}")
        blocks = perf.kv_capacity_tokens // limits.block_size if kv_blocks is None else kv_blocks
        if blocks < 1:
            raise ValueError(f"the KV cache must hold at least one block, got {blocks}")
        self._loop = loop
        self._rng = rng or random.Random(0)
        self._perf = perf
        self._sink = sink
        self._speed = speed
        self._block = limits.block_size
        self._max_seqs = limits.max_num_seqs
        self._budget = limits.max_num_batched_tokens
        self.total_blocks = blocks
        self._free_blocks = blocks
        self._decode_cache: dict[int, float] = {}
        base = perf.prefill_time(1)
        self._extra = [
            max(0.0, perf.prefill_time(max(1, i * _EXTRA_BUCKET)) - base) / speed
            for i in range(-(-self._budget // _EXTRA_BUCKET) + 1)
        ]
        self._queue: deque[SimRequest] = deque()
        self._waiting = 0  # queued and not aborted
        self._waiting_tokens = 0  # their prompt tokens
        self._running = 0
        self._context_sum = 0  # of running requests' mean contexts
        self._prompt_sum = 0  # prompt tokens held by running requests
        # Tokens generated by decoding requests at time t: t * rate_sum - offset_sum.
        self._rate_sum = 0.0
        self._offset_sum = 0.0
        self._prefill_end = -math.inf  # when the prefills admitted so far are done
        self._step_start = -math.inf  # when the last of those prefill steps starts
        self._step_tokens = 0  # prompt tokens in it
        self._chain_steps = 0  # prefill steps so far
        # Prompts admitted, averaged over the window: their rate and prefill seconds.
        self._load = _Load(loop.now, load_window_s / speed)
        self._recent = [0.0] * _RECENT  # prefill seconds of the last prompts admitted
        self._recent_count = 0
        self._load_at = loop.now
        self._busy = 0.0
        self._busy_since = 0.0

    # -- the replica's interface -------------------------------------------------------------

    def submit(self, request: SimRequest) -> None:
        """A request arrives at ``loop.now``: admit it or queue it (FIFO)."""
        prompt, output = request.prompt_tokens, request.output_tokens
        if prompt < 1 or output < 1:
            raise ValueError("a request needs at least one prompt and one output token")
        blocks = -(-(prompt + output) // self._block)
        if blocks > self.total_blocks:
            raise ValueError(
                f"{prompt + output} tokens exceed the KV cache "
                f"({self.total_blocks * self._block} tokens)"
            )
        if self._waiting or self._running >= self._max_seqs or blocks > self._free_blocks:
            request.replica_state = _Queued(blocks)
            self._queue.append(request)
            self._waiting += 1
            self._waiting_tokens += prompt
            return
        self._admit(request, blocks, boundary=False)

    def abort(self, request: SimRequest) -> None:
        """Drop a request (timeout, or the pod stops): its room is freed, no callbacks follow."""
        state = request.replica_state
        if isinstance(state, _Queued):
            if not state.aborted:
                state.aborted = True
                self._waiting -= 1
                self._waiting_tokens -= request.prompt_tokens
        elif isinstance(state, _Admitted):
            decoding = state.first is not None and not state.first.pending
            if state.first is not None:
                state.first.cancel()
            if state.finish is not None:
                state.finish.cancel()
            self._release(state, decoding=decoding)
            self._admit_waiting(boundary=False)
        request.replica_state = None

    def gauges(self) -> tuple[int, int, float]:
        """(running, waiting, KV usage 0-1) at ``loop.now``, as vLLM's /metrics would show."""
        held = self._prompt_sum + self._loop.now * self._rate_sum - self._offset_sum
        used = max(0.0, held) / self._block + self._running / 2  # half a block each, on average
        return self._running, self._waiting, min(1.0, used / self.total_blocks)

    @property
    def busy_s(self) -> float:
        """Engine seconds with work (a request admitted) up to ``loop.now``."""
        if self._running:
            return self._busy + self._loop.now - self._busy_since
        return self._busy

    # -- the model ---------------------------------------------------------------------------

    def decode_time(self, batch: int, context: int) -> float:
        """Seconds of a decode step of ``batch`` sequences at mean ``context`` (cached)."""
        if context < 16:
            key, mid = batch << 8, max(1, context)
            key |= context
        else:
            octave = context.bit_length() - 4  # 8 buckets per octave: context >> octave in 8..15
            eighth = context >> octave
            key = (batch << 8) | 16 + (octave << 3) + eighth - 8
            mid = ((eighth << 1) + 1) << octave >> 1  # the bucket's middle
        step = self._decode_cache.get(key)
        if step is None:
            step = self._perf.decode_step_time([mid] * batch) / self._speed
            self._decode_cache[key] = step
        return step

    def _extra_time(self, tokens: int) -> float:
        """What prefilling ``tokens`` adds to steps, chunked at the token budget."""
        full, rest = divmod(tokens, self._budget)
        extra = self._extra
        return full * extra[-1] + extra[-(-rest // _EXTRA_BUCKET)]

    def _admit(self, request: SimRequest, blocks: int, *, boundary: bool) -> None:
        loop = self._loop
        now = loop.now
        prompt, output = request.prompt_tokens, request.output_tokens
        before = self._running
        if before == 0:
            self._busy_since = now
        batch = before + 1
        self._running = batch
        self._free_blocks -= blocks
        context = prompt + output // 2
        self._context_sum += context
        self._prompt_sum += prompt
        decode = self.decode_time(batch, self._context_sum // batch)
        room = self._budget - batch if self._budget > batch else 1
        end = self._prefill(now, prompt, decode, room, wait=not boundary and before > 0)
        prefill = self._extra_time(prompt)
        self._recent[self._recent_count % _RECENT] = prefill
        self._recent_count += 1
        self._load.add(now, prefill)
        state = _Admitted(blocks, context, prompt, end, self._chain_steps)
        request.replica_state = state
        if output == 1:
            state.finish = loop.at(end, lambda: self._finish(request, state, decoding=False))
        else:
            state.first = loop.at(end, lambda: self._first(request, state))

    def _prefill(self, now: float, prompt: int, decode: float, room: int, *, wait: bool) -> float:
        """When a prompt admitted now is prefilled: its first token.

        Prompts go FIFO into steps of ``room`` tokens. A step not yet started takes the prompt
        too (vLLM fills each step's budget from the waiting queue); otherwise the prompt waits
        for the prefills queued before it or, with ``wait``, for the running decode step
        (half of one on average; none at a step boundary or on an idle engine).
        """
        extra = self._extra
        end = self._prefill_end
        if end > now and now < self._step_start:
            held = self._step_tokens
            take = min(prompt, room - held)
            end += extra[-(-(held + take) // _EXTRA_BUCKET)] - extra[-(-held // _EXTRA_BUCKET)]
            self._step_tokens = held + take
            left = prompt - take
        else:
            ready = now + 0.5 * decode if wait else now
            end = max(end, ready)
            left = prompt
        if left:
            steps, rest = divmod(left, room)
            if rest == 0:
                steps, rest = steps - 1, room
            end += steps * (decode + extra[-(-room // _EXTRA_BUCKET)])
            self._step_start = end
            end += decode + extra[-(-rest // _EXTRA_BUCKET)]
            self._step_tokens = rest
            self._chain_steps += steps + 1
        self._prefill_end = end
        return end

    def _first(self, request: SimRequest, state: _Admitted) -> None:
        now = self._loop.now
        state.ttft = now
        request.first_token_at = now
        # Decodes one token per step of the prompts queued for prefill after it.
        self._plan(request, state, request.output_tokens - 1, self._chain_steps - state.steps)
        self._sink.first_token(request, now)

    def _plan(self, request: SimRequest, state: _Admitted, tokens: int, steps: float) -> None:
        """Plan the next ``tokens`` tokens from the engine's state now: the finish, or a
        re-plan after one load window when the answer is longer than that.

        Known work comes first: ``steps`` prefill steps queued (to ``prefill_end``), then the
        prompts waiting for room (they come in as requests leave), one full step per ``room``
        tokens; then the recent prefill load (:meth:`_decoding`). Re-planning every window
        lets a long answer speed up when a burst ends, as the engine does.
        """
        loop = self._loop
        now = loop.now
        batch = self._running
        decode = self.decode_time(batch, self._context_sum // batch)
        room = self._budget - batch if self._budget > batch else 1
        full = decode + self._extra[-(-room // _EXTRA_BUCKET)]
        until = now
        waiting = self._waiting_tokens / room
        for queued, seconds in (
            (steps, self._prefill_end - now),
            (waiting, waiting * full),
        ):
            if tokens and queued > 0 and seconds > 0:
                if tokens <= queued:
                    until += seconds * tokens / queued
                    tokens = 0
                else:
                    until += seconds
                    tokens -= math.ceil(queued)
        left = 0
        if tokens:
            rate, extra = self._load.at(now)
            near = int(self._load.window / self._itl(decode, full, rate * extra))
            if near < tokens:
                tokens, left = max(1, near), tokens - max(1, near)
            until += self._decoding(tokens, decode, full, rate, extra)
        # KV gauge: the tokens it holds grow by ``speed`` per second from ``held`` at ``now``.
        done = request.output_tokens - 1 - left - tokens  # generated before this plan's decode
        speed = (request.output_tokens - 1 - left - done) / (until - now) if until > now else 0.0
        self._rate_sum += speed - state.rate
        self._offset_sum += now * speed - done - (state.since * state.rate - state.done)
        state.rate, state.since, state.done = speed, now, done
        if left:
            state.finish = loop.at(until, lambda: self._plan(request, state, left, 0.0))
        else:
            state.finish = loop.at(until, lambda: self._finish(request, state, decoding=True))

    @staticmethod
    def _itl(decode: float, full: float, rho: float) -> float:
        """Decode steps stretched by a prefill share ``rho`` of engine time, at most full."""
        itl = decode / (1.0 - rho) if rho < _RHO_MAX else full
        return itl if itl < full else full

    def _decoding(
        self, tokens: int, decode: float, full: float, rate: float, extra: float
    ) -> float:
        """Seconds to decode ``tokens`` tokens while prompts arrive at ``rate`` per second,
        each adding about ``extra`` seconds of prefill to one step.

        On average that is ``tokens · decode / (1 - rho)`` with ``rho = rate · extra``; for an
        answer that meets few prompts, which ones it meets is drawn (arrivals as a Poisson
        process, their prefill times from the last prompts admitted), because a longer step
        lets more prompts arrive and a short answer may meet none or a 7,000-token one.
        """
        if tokens <= 0:
            return 0.0
        longest = tokens * full
        mean = tokens * self._itl(decode, full, rate * extra)
        if mean >= longest or rate * mean > _SAMPLED_HITS or not self._recent_count:
            return mean
        rng = self._rng
        recent, size, draw, gap = (
            self._recent,
            min(self._recent_count, _RECENT),
            rng.random,
            rng.expovariate,
        )
        cap = full - decode
        span = tokens * decode
        arrival = gap(rate)
        while arrival < span:
            one = recent[int(draw() * size)]
            span += one if one < cap else cap
            if span >= longest:
                return longest
            arrival += gap(rate)
        return span

    def _finish(self, request: SimRequest, state: _Admitted, *, decoding: bool) -> None:
        now = self._loop.now
        if decoding:
            request.itl_s = (now - state.ttft) / (request.output_tokens - 1)
        else:
            request.first_token_at = now
            request.itl_s = None  # one token: no inter-token latency
            self._sink.first_token(request, now)
        request.finished_at = now
        request.replica_state = None
        self._release(state, decoding=decoding)
        self._sink.finished(request, now)
        self._admit_waiting(boundary=True)

    def _release(self, state: _Admitted, *, decoding: bool) -> None:
        self._running -= 1
        self._free_blocks += state.blocks
        self._context_sum -= state.context
        self._prompt_sum -= state.prompt
        if self._running == 0:
            self._busy += self._loop.now - self._busy_since
            self._rate_sum = self._offset_sum = 0.0  # no drift carried into the next busy period
        elif decoding:
            self._rate_sum -= state.rate
            self._offset_sum -= state.since * state.rate - state.done

    def _admit_waiting(self, *, boundary: bool) -> None:
        queue = self._queue
        while queue:
            request = queue[0]
            state = request.replica_state
            if not isinstance(state, _Queued) or state.aborted:
                queue.popleft()
                continue
            if self._running >= self._max_seqs or state.blocks > self._free_blocks:
                return  # FIFO: the head waits for room, nobody overtakes it
            queue.popleft()
            self._waiting -= 1
            self._waiting_tokens -= request.prompt_tokens
            self._admit(request, state.blocks, boundary=boundary)


# -- replaying a workload at both fidelities (tests and the fidelity bench) ------------------


class ReplayRequest:
    """A request of a replayed workload, with what a replica writes on it."""

    __slots__ = (
        "arrival",
        "finished_at",
        "first_token_at",
        "itl_s",
        "output_tokens",
        "prompt_tokens",
        "replica_state",
    )

    def __init__(self, arrival: float, prompt_tokens: int, output_tokens: int) -> None:
        self.arrival = arrival
        self.prompt_tokens = prompt_tokens
        self.output_tokens = output_tokens
        self.first_token_at: float | None = None
        self.finished_at: float | None = None
        self.itl_s: float | None = None
        self.replica_state: object | None = None


class _NoSink:
    def first_token(self, request: SimRequest, at: float) -> None:
        pass

    def finished(self, request: SimRequest, at: float) -> None:
        pass


def _arrive_in_order(
    loop: EventLoop, requests: Sequence[ReplayRequest], submit: Callable[[ReplayRequest], None]
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
    requests: Sequence[ReplayRequest],
    *,
    speed: float = 1.0,
    kv_blocks: int | None = None,
) -> float:
    """Replay ``requests`` (in arrival order) on one :class:`FastReplica`; returns its busy
    seconds. Each request gets ``first_token_at``, ``finished_at`` and ``itl_s``."""
    loop = EventLoop()
    replica = FastReplica(loop, perf, limits, _NoSink(), speed=speed, kv_blocks=kv_blocks)
    _arrive_in_order(loop, requests, replica.submit)
    loop.run()
    return replica.busy_s


def run_iteration(
    perf: PerfModel,
    limits: SchedulerLimits,
    requests: Sequence[ReplayRequest],
    *,
    speed: float = 1.0,
    kv_blocks: int | None = None,
) -> float:
    """Replay ``requests`` on the emulator's scheduler, steps back to back on an
    :class:`EventLoop` (the iteration-level reference); returns the engine's busy seconds.
    Each request gets ``first_token_at``, ``finished_at`` and ``itl_s`` (mean over its
    tokens after the first)."""
    loop = EventLoop()
    blocks = perf.kv_capacity_tokens // limits.block_size if kv_blocks is None else kv_blocks
    scheduler = Scheduler(perf, blocks, limits)
    replayed: dict[int, ReplayRequest] = {}
    engine: dict[int, EngineRequest] = {}
    stepping = False
    busy = 0.0

    def step() -> None:
        nonlocal stepping, busy
        planned = scheduler.schedule(loop.now)
        if not planned.batch:
            stepping = False  # idle (nothing fits would be a bug: every request fits alone)
            return
        stepping = True
        duration = planned.duration / speed
        busy += duration
        end = loop.now + duration

        def done() -> None:
            result = scheduler.complete(planned, end)
            for item in result.first_tokens:
                replayed[item.request_id].first_token_at = end
            for item in result.finished:
                out = replayed[item.request_id]
                out.finished_at = end
                first = out.first_token_at
                if first is not None and item.output_tokens > 1:
                    out.itl_s = (end - first) / (item.output_tokens - 1)
            step()

        loop.at(end, done)

    def submit(request: ReplayRequest) -> None:
        ident = len(replayed)
        replayed[ident] = request
        item = EngineRequest(ident, request.prompt_tokens, request.output_tokens, loop.now)
        engine[ident] = item
        scheduler.add(item)
        if not stepping:
            step()

    _arrive_in_order(loop, requests, submit)
    loop.run()
    return busy


def replay_requests(items: Iterable[tuple[float, int, int]]) -> list[ReplayRequest]:
    """Fresh :class:`ReplayRequest` objects from ``(arrival, prompt, output)`` triples."""
    return [ReplayRequest(at, prompt, output) for at, prompt, output in items]
