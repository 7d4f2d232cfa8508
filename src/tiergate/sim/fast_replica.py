"""The request-level engine: an analytic model of one vLLM replica, for weeks of traffic.

The iteration-level replica steps the emulator's scheduler (``tiergate.emulator.scheduler``)
one engine step at a time. :class:`FastReplica` has the same interface and the same costs
(``tiergate.perf.PerfModel``), but no event per token or per step: a request costs O(1)
arithmetic and about three events on the simulator's loop (the end of its prefill step, shared
by the prompts packed into it; its finish; a re-plan per ``load_window_s`` of a long answer).

**Step costs**, looked up in tables built from the performance model: ``decode(d, L)``, a
decode-only step of ``d`` sequences at mean context ``L``; ``extra(p)``, what prefilling a
prompt of ``p`` tokens adds to steps (``prefill_time(p) - prefill_time(1)``, chunk by chunk
beyond ``max_num_batched_tokens``); and ``full(d, L)``, a step whose token budget is full of
prompts of the mean length. A step with a prefill chunk and decodes costs the larger of
``decode + extra`` (a compute-bound chunk, the decodes adding their memory floor) and the
chunk plus the decodes' tokens priced as one prefill (short prompts on a big batch, where the
decodes' own compute is what the chunk adds to): within 3% of the roofline's own price for the
shapes the traces produce.

**Admission**: a request is admitted when there is a sequence slot (``max_num_seqs``) and KV
blocks for its prompt plus output. The whole request is reserved at once, where vLLM allocates
as it grows and preempts when the pool runs dry: never preempting keeps the model event-free.
Otherwise it waits FIFO, and enters when a finish or an abort frees room.

**Time to first token**: prompts are prefilled FIFO in steps of ``B - d`` tokens (the budget
left by the ``d`` decodes), as vLLM fills each step from its waiting queue. The replica keeps
the chain of prefill steps admitted so far: when it ends, and the last step, still open to
prompts that arrive before it starts. A prompt joins that open step (all its prompts get their
first token when it ends), or waits for the chain, or for the running decode step (half of
one on average), then takes its own steps: ``ceil(p / (B - d))`` of them, priced as above.

**Inter-token latency**: a decoding request gets one token per step. At its first token it is
planned: one token per prefill step still queued in the chain and per ``B - d`` tokens of the
prompts waiting for room (known work); then the prompts that will arrive, at the rate and
prefill size of the recent ones (exponential averages over ``load_window_s``) including those
that arrived while it decoded the known work. On average that is ``decode / (1 - rho)`` per
token with ``rho`` the share of engine time spent prefilling, at most ``full`` (prefill-bound:
every step full), which is how a prefill-heavy trace (the Azure code trace: ~2,000 prompt
tokens for ~30 output) saturates where the iteration model does. An answer that meets few
prompts draws which ones (Poisson arrivals, prefill times of the last prompts admitted): the
spread of ITL across short answers comes from that. An answer longer than one window is
re-planned after it, so that it speeds up when a burst ends.

``speed`` divides every step time (and the window), as the emulator's ``speed`` does. The
gauges read what vLLM's ``/metrics`` would show: running (its prefill started), waiting
(queued for room, or admitted with its prefill yet to start), and KV usage from the tokens each
running request holds by now. Randomness comes
from the ``rng`` given (seeded: a run is deterministic). ``tiergate.sim.replay`` replays a
workload on this model and on the scheduler, and compares them.
"""

from __future__ import annotations

import math
import random
from collections import deque
from typing import Any, Generic, Protocol, TypeVar

from tiergate.emulator.scheduler import SchedulerLimits
from tiergate.perf import PerfModel
from tiergate.sim.loop import EventLoop, Timer

_EXTRA_BUCKET = 16  # tokens: granularity of the prefill-cost table
_RECENT = 64  # prompts remembered for the prefills a short answer meets
_SAMPLED_HITS = 16  # above this many, their mean stands for them
_RHO_MAX = 0.999  # beyond this the load is prefill-bound; the full-step cap applies anyway
_PREFILL, _DECODE, _GONE = 0, 1, 2  # a request's phase in the batch


class SimRequest(Protocol):
    """What a replica reads and writes on a request (the simulator's request has these)."""

    prompt_tokens: int
    output_tokens: int
    arrival: float
    first_token_at: float | None
    finished_at: float | None
    itl_s: float | None
    replica_state: object | None


R = TypeVar("R", bound=SimRequest)
R_contra = TypeVar("R_contra", bound=SimRequest, contravariant=True)


class ReplicaSink(Protocol[R_contra]):
    """The simulator's gateway side: told of each request's first token and its end."""

    def first_token(self, request: R_contra, at: float) -> None: ...

    def finished(self, request: R_contra, at: float) -> None: ...


class _Admitted:
    """A request's bookkeeping inside the batch (kept in ``request.replica_state``)."""

    __slots__ = (
        "blocks",
        "context",
        "done",
        "finish",
        "phase",
        "prompt",
        "rate",
        "since",
        "start",
        "steps",
        "ttft",
    )

    def __init__(self, blocks: int, context: int, prompt: int) -> None:
        self.blocks = blocks
        self.context = context  # prompt + output / 2: its mean context while it decodes
        self.prompt = prompt
        self.phase = _PREFILL
        self.ttft = 0.0  # time of its first token
        self.steps = 0  # prefill steps queued up to its own last one
        self.finish: Timer | None = None  # its finish, or its next plan
        # Tokens generated: ``done`` at ``since``, then ``rate`` per second (the KV gauge).
        self.done = 0
        self.since = 0.0
        self.start = 0.0  # when its prefill starts (-inf once no longer counted as waiting)
        self.rate = 0.0


class _Step:
    """The last prefill step of the chain: prompts packed into it get their first token when
    it ends, together, and a prompt packed in late moves that end for all of them."""

    __slots__ = ("members", "timer")

    def __init__(self) -> None:
        self.members: list[tuple[Any, _Admitted]] = []  # (the request, its state)
        self.timer: Timer | None = None


class _Load:
    """Prompts admitted and their prefill seconds, exponentially averaged over ``window``
    (the replica adds to them inline, on its hot path)."""

    __slots__ = ("count", "last", "seconds", "window")

    def __init__(self, now: float, window: float) -> None:
        self.window = window
        self.last = now
        self.count = 0.0
        self.seconds = 0.0

    def at(self, now: float, since: float | None = None) -> tuple[float, float]:
        """(prompts per second, mean prefill seconds of one) as of ``now``, leaving out one
        prompt admitted at ``since`` (a request does not meet its own prompt)."""
        if not self.count:
            return 0.0, 0.0
        window = self.window
        count = self.count * math.exp((self.last - now) / window)
        if since is not None:
            count -= math.exp((since - now) / window)
        return (count / window if count > 0.0 else 0.0), self.seconds / self.count


class _Queued:
    """A request waiting for room; ``aborted`` lets an abort skip it lazily (O(1))."""

    __slots__ = ("aborted", "blocks")

    def __init__(self, blocks: int) -> None:
        self.blocks = blocks
        self.aborted = False


class FastReplica(Generic[R]):
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
        sink: ReplicaSink[R],
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
        self._nominal_speed = speed
        self._slowdown = 1.0
        self._price(speed)
        self._queue: deque[R] = deque()
        self._in_flight: dict[int, R] = {}  # by id(): submitted, not yet finished
        self._waiting = 0  # queued and not aborted
        self._waiting_tokens = 0  # their prompt tokens
        # Admitted, their prefill not started yet (in order of that start): vLLM's waiting.
        self._pending: deque[_Admitted] = deque()
        self._pending_count = self._pending_tokens = 0
        self._running = 0
        self._decoders = 0  # running requests past their first token
        self._context_sum = 0  # of running requests' mean contexts
        self._prompt_sum = 0  # prompt tokens held by running requests
        self._prompt_total = self._prompt_count = 0  # of every prompt admitted: the mean
        self._prompt_mean, self._prompt_key = 1, 1 << 28  # its bucket's middle, and cache key
        # Tokens generated by decoding requests at time t: t * rate_sum - offset_sum.
        self._rate_sum = 0.0
        self._offset_sum = 0.0
        self._prefill_end = -math.inf  # when the prefills admitted so far are done
        self._step_start = -math.inf  # when the last of those prefill steps starts
        self._step_tokens = 0  # prompt tokens in it
        self._open: _Step | None = None  # that step
        self._chain_steps = 0  # prefill steps so far
        # Prompts admitted, averaged over the window: their rate and prefill seconds.
        self._load = _Load(loop.now, load_window_s / speed)
        self._recent = [0.0] * _RECENT  # prefill seconds of the last prompts admitted
        self._recent_count = 0
        self._busy = 0.0
        self._busy_since = 0.0

    def _price(self, speed: float) -> None:
        """The step prices at ``speed`` times the performance model's pace (caches anew)."""
        perf = self._perf
        self._speed = speed
        self._step_cache: dict[int, tuple[float, float]] = {}
        self._packed_cache: dict[int, list[float]] = {}
        base = perf.prefill_time(1)
        self._base = base / speed  # a step of one prompt token: the weights' memory floor
        self._per_sequence = perf.efficiency.sequence_overhead_s / speed
        self._extra = [
            max(0.0, perf.prefill_time(max(1, i * _EXTRA_BUCKET)) - base) / speed
            for i in range(-(-self._budget // _EXTRA_BUCKET) + 1)
        ]

    # -- the replica's interface -------------------------------------------------------------

    @property
    def slowdown(self) -> float:
        """How many times slower than nominal its steps run (a slowdown fault); steps priced
        from now on take it, those already planned keep their times."""
        return self._slowdown

    @slowdown.setter
    def slowdown(self, factor: float) -> None:
        if factor != self._slowdown:
            self._slowdown = factor
            self._price(self._nominal_speed / factor)

    @property
    def in_flight(self) -> int:
        """Requests submitted and not yet finished or aborted."""
        return len(self._in_flight)

    def fits(self, request: R) -> bool:
        """Whether the request's prompt and output fit the KV cache (vLLM answers 400 else)."""
        blocks = -(-(request.prompt_tokens + request.output_tokens) // self._block)
        return blocks <= self.total_blocks

    def submit(self, request: R) -> None:
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
        self._in_flight[id(request)] = request
        if self._waiting or self._running >= self._max_seqs or blocks > self._free_blocks:
            request.replica_state = _Queued(blocks)
            self._queue.append(request)
            self._waiting += 1
            self._waiting_tokens += prompt
            return
        self._admit(request, blocks, boundary=False)

    def abort(self, request: R) -> None:
        """Drop a request (timeout, or the pod stops): its room is freed, no callbacks follow."""
        state = request.replica_state
        if isinstance(state, _Queued):
            if not state.aborted:
                state.aborted = True
                self._waiting -= 1
                self._waiting_tokens -= request.prompt_tokens
        elif isinstance(state, _Admitted) and state.phase != _GONE:
            decoding = state.phase == _DECODE
            if state.start > self._loop.now:  # counted as waiting until now
                state.start = -math.inf
                self._pending_count -= 1
                self._pending_tokens -= state.prompt
            state.phase = _GONE  # its prefill step skips it
            if state.finish is not None:
                state.finish.cancel()
            self._release(state, decoding=decoding)
            self._admit_waiting(boundary=False)
        request.replica_state = None
        self._in_flight.pop(id(request), None)

    def stop(self) -> list[R]:
        """The pod stops: abort every request in it and return them (oldest first), for the
        gateway to fail or retry."""
        stopped = list(self._in_flight.values())
        for request in stopped:
            self.abort(request)
        return stopped

    def gauges(self) -> tuple[int, int, float]:
        """(running, waiting, KV usage 0-1) at ``loop.now``, as vLLM's /metrics would show:
        a request admitted whose prefill has not started yet is waiting, and holds no KV."""
        now = self._loop.now
        self._settle(now)
        pending = self._pending_count
        held = self._prompt_sum - self._pending_tokens + now * self._rate_sum - self._offset_sum
        running = self._running - pending
        used = max(0.0, held) / self._block + running / 2  # half a block each, on average
        return running, self._waiting + pending, min(1.0, used / self.total_blocks)

    def _settle(self, now: float) -> None:
        """Forget the admitted requests whose prefill has started by ``now``."""
        pending = self._pending
        while pending and pending[0].start <= now:
            state = pending.popleft()
            if state.start != -math.inf:  # else an abort already took it off
                self._pending_count -= 1
                self._pending_tokens -= state.prompt

    @property
    def busy_s(self) -> float:
        """Engine seconds with work (a request admitted) up to ``loop.now``."""
        if self._running:
            return self._busy + self._loop.now - self._busy_since
        return self._busy

    # -- the model ---------------------------------------------------------------------------

    def step_times(self, decodes: int, context: int) -> tuple[float, float]:
        """Seconds of a step that decodes ``decodes`` sequences at mean ``context``: alone,
        and with the rest of the token budget prefilled with prompts of the mean length so
        far (cached by all three, context and prompt length in buckets of 1/8 octave)."""
        if context < 16:
            key = self._prompt_key | (decodes << 8) | context
        else:
            octave = context.bit_length() - 4  # as in _bucket, inlined: this is the hot path
            key = self._prompt_key | (decodes << 8) | 8 + (octave << 3) + (context >> octave)
        times = self._step_cache.get(key)
        if times is None:
            perf, speed, contexts = self._perf, self._speed, [_bucket(context)[1]] * decodes
            room = max(1, self._budget - decodes)
            times = (
                perf.decode_step_time(contexts) / speed,
                perf.step_time(_chunks(room, self._prompt_mean), contexts) / speed,
            )
            self._step_cache[key] = times
        return times

    def _packed(self) -> list[float]:
        """What ``16 i`` prompt tokens add to a step, packed as prompts of the mean length
        (each attends to itself only): the cost of filling a step's budget."""
        pbucket, prompt = self._prompt_key, self._prompt_mean
        table = self._packed_cache.get(pbucket)
        if table is None:
            perf, speed, base = self._perf, self._speed, self._perf.prefill_time(1)
            table = [
                max(0.0, perf.step_time(_chunks(max(1, i * _EXTRA_BUCKET), prompt), []) - base)
                / speed
                for i in range(len(self._extra))
            ]
            self._packed_cache[pbucket] = table
        return table

    def _extra_time(self, tokens: int) -> float:
        """What prefilling one prompt of ``tokens`` adds to steps: chunks of the token budget,
        each attending to the chunks before it (priced at once for prompts over the budget)."""
        budget = self._budget
        if tokens <= budget:
            return self._extra[-(-tokens // _EXTRA_BUCKET)]
        perf, base, done, extra = self._perf, self._perf.prefill_time(1), 0, 0.0
        while done < tokens:
            chunk = min(budget, tokens - done)
            extra += perf.step_time([(chunk, done)], []) - base
            done += chunk
        return extra / self._speed

    def _admit(self, request: R, blocks: int, *, boundary: bool) -> None:
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
        # The prefill steps carry the requests that decode, not those still to prefill.
        decoders = self._decoders if self._decoders else 1
        decode = self.step_times(decoders, self._context_sum // batch)[0]
        room = self._budget - decoders if self._budget > decoders else 1
        state = _Admitted(blocks, context, prompt)
        state.since = now  # admitted (until its first plan)
        request.replica_state = state
        # A step of its prompt (or of its first chunk) with the decodes; what the prompt adds
        # to such a step is the load that later answers meet.
        alone = self._step_cost(self._extra, prompt if prompt < room else room, decode)
        prefill = alone - decode
        if prompt > room:
            chunked = self._extra_time(prompt)
            prefill = chunked if chunked > prefill else prefill
        self._prefill(request, state, decode, room, alone, wait=not boundary and before > 0)
        # Until its first chunk is scheduled vLLM counts it as waiting, holding no KV blocks.
        pending = self._pending
        if pending and pending[0].start <= now:
            self._settle(now)
        if state.start > now:
            pending.append(state)
            self._pending_count += 1
            self._pending_tokens += prompt
        self._prompt_total += prompt
        self._prompt_count += 1
        if self._prompt_count < _RECENT or not self._prompt_count % _RECENT:
            # The mean prompt changes slowly; its bucket is a key of the step-time caches.
            index, self._prompt_mean = _bucket(self._prompt_total // self._prompt_count)
            self._prompt_key = index << 28
        self._recent[self._recent_count % _RECENT] = prefill
        self._recent_count += 1
        load = self._load  # _Load.add, inlined: this is the hot path
        decay = math.exp((load.last - now) / load.window)
        load.count = load.count * decay + 1.0
        load.seconds = load.seconds * decay + prefill
        load.last = now

    def _step_cost(self, table: list[float], tokens: int, decode: float) -> float:
        """Seconds of a step that prefills ``tokens`` (priced by ``table``) and decodes: the
        roofline's ``max(compute, memory)`` of the sum, from the parts' own prices. Either
        the decodes' memory floor plus the chunk's extra, or, when the decodes' tokens add
        compute to a compute-bound chunk (a big batch of short prompts), the chunk and the
        decodes priced as tokens of one prefill."""
        decoders = self._decoders
        together = tokens + decoders
        together = together if together < self._budget else self._budget  # no min(): hot path
        memory = decode + table[-(-tokens // _EXTRA_BUCKET)]
        compute = self._base + table[-(-together // _EXTRA_BUCKET)] + decoders * self._per_sequence
        return memory if memory > compute else compute

    def _prefill(
        self,
        request: R,
        state: _Admitted,
        decode: float,
        room: int,
        alone: float,
        *,
        wait: bool,
    ) -> None:
        """Queue the prefill of a prompt admitted now, up to the step that ends with its
        first token (``alone``: a step of the prompt, or of its first chunk, with the
        decodes).

        Prompts go FIFO into steps of ``room`` tokens. A step not yet started takes the prompt
        too (vLLM fills each step's budget from the waiting queue); otherwise the prompt waits
        for the prefills queued before it or, with ``wait``, for the running decode step
        (half of one on average; none at a step boundary or on an idle engine).
        """
        now = self._loop.now
        prompt = request.prompt_tokens
        end = self._prefill_end
        step = self._open
        if end > now and now < self._step_start and step is not None:
            state.start = self._step_start
            packed = self._packed()
            held = self._step_tokens
            take = prompt if prompt < room - held else room - held
            cost = self._step_cost
            end += cost(packed, held + take, decode) - cost(packed, held, decode)
            self._step_tokens = held + take
            left = prompt - take
            self._retime(step, end)
        else:
            ready = now + 0.5 * decode if wait else now
            end = ready if ready > end else end
            state.start = end
            left = prompt
        if left:
            # Its own steps: one per ``room`` tokens, the last one open to later prompts.
            steps = -(-left // room)
            rest = left - (steps - 1) * room
            last = (
                alone
                if left == prompt and steps == 1
                else self._step_cost(self._extra, rest, decode)
            )
            took = last
            if steps > 1:
                took += (steps - 1) * self._step_cost(self._extra, room, decode)
                took = max(took, steps * decode + self._extra_time(left))
            self._step_start = end + took - last
            end += took
            self._step_tokens = rest
            self._chain_steps += steps
            step = _Step()
            self._open = step
            self._retime(step, end)
        assert step is not None  # a prompt has at least one token: it is in some step
        step.members.append((request, state))
        state.steps = self._chain_steps
        self._prefill_end = end

    def _retime(self, step: _Step, end: float) -> None:
        """Move ``step``'s end (and its event) to ``end``."""
        if step.timer is not None:
            step.timer.cancel()
        step.timer = self._loop.at(end, lambda: self._prefilled(step))

    def _prefilled(self, step: _Step) -> None:
        """A prefill step ended: the first token of every prompt it completed."""
        if self._open is step:
            self._open = None
        now, plan, sink = self._loop.now, self._plan, self._sink
        for request, state in step.members:
            if state.phase != _PREFILL:
                continue  # aborted
            if request.output_tokens == 1:
                self._finish(request, state, decoding=False)
                continue
            state.ttft = now
            state.phase = _DECODE
            request.first_token_at = now
            self._decoders += 1
            # One token per step of the prompts queued for prefill after it, to begin with.
            steps = self._chain_steps - state.steps
            plan(request, state, request.output_tokens - 1, steps, admitted=state.since)
            sink.first_token(request, now)

    def _plan(
        self,
        request: R,
        state: _Admitted,
        tokens: int,
        steps: float,
        *,
        admitted: float | None = None,
    ) -> None:
        """Plan the next ``tokens`` tokens from the engine's state now: the finish, or a
        re-plan after one load window when the answer is longer than that.

        Known work comes first: ``steps`` prefill steps queued (to ``prefill_end``), then the
        prompts waiting for room (they come in as requests leave), one full step per ``room``
        tokens; then the recent prefill load (:meth:`_decoding`). Re-planning every window
        lets a long answer speed up when a burst ends, as the engine does.
        """
        loop = self._loop
        now = loop.now
        decoders = self._decoders
        decode, full = self.step_times(decoders, self._context_sum // self._running)
        room = self._budget - decoders if self._budget > decoders else 1
        planned, until = tokens, now
        backlog = self._prefill_end - now
        if steps > 0 and backlog > 0:
            if tokens <= steps:
                until += backlog * tokens / steps
                tokens = 0
            else:
                until += backlog
                tokens -= math.ceil(steps)
        if tokens and self._waiting_tokens:
            waiting = self._waiting_tokens / room
            if tokens <= waiting:
                until += tokens * full
                tokens = 0
            else:
                until += waiting * full
                tokens -= math.ceil(waiting)
        left = 0
        if tokens:
            rate, extra = self._load.at(now, admitted)
            rho = rate * extra
            itl = decode / (1.0 - rho) if rho < _RHO_MAX else full
            near = int(self._load.window / (itl if itl < full else full))
            if near < tokens:
                tokens, left = max(1, near), tokens - max(1, near)
            until += self._decoding(tokens, decode, full, rate, extra, head=until - now)
        # KV gauge: it holds ``done`` tokens now, then ``pace`` more per second.
        done = request.output_tokens - 1 - planned
        pace = (planned - left) / (until - now) if until > now else 0.0
        self._rate_sum += pace - state.rate
        self._offset_sum += now * pace - done - (state.since * state.rate - state.done)
        state.rate, state.since, state.done = pace, now, done
        if left:
            # The prompts queued meanwhile were charged to this plan's span: not again.
            state.finish = loop.at(until, lambda: self._plan(request, state, left, 0.0))
        else:
            state.finish = loop.at(until, lambda: self._finish(request, state, decoding=True))

    @staticmethod
    def _itl(decode: float, full: float, rho: float) -> float:
        """Decode steps stretched by a prefill share ``rho`` of engine time, at most full."""
        itl = decode / (1.0 - rho) if rho < _RHO_MAX else full
        return itl if itl < full else full

    def _decoding(
        self, tokens: int, decode: float, full: float, rate: float, extra: float, *, head: float
    ) -> float:
        """Seconds to decode ``tokens`` tokens while prompts arrive at ``rate`` per second,
        each adding about ``extra`` seconds of prefill to one step; those that arrived in the
        last ``head`` seconds (while it decoded through the known backlog) come first.

        On average that is ``(tokens · decode + rate · head · extra) / (1 - rho)`` with
        ``rho = rate · extra``; for an answer that meets few prompts, which ones it meets is
        drawn (arrivals as a Poisson process, their prefill times from the last prompts
        admitted), because a longer step lets more prompts arrive and a short answer may
        meet none or a 7,000-token one.
        """
        if tokens <= 0:
            return 0.0
        longest = tokens * full
        rho = rate * extra
        if rho >= _RHO_MAX:
            return longest
        mean = (tokens * decode + rate * head * extra) / (1.0 - rho)
        if mean >= longest:
            return longest
        if rate <= 0.0 or rate * (head + mean) > _SAMPLED_HITS or not self._recent_count:
            return mean
        rng = self._rng
        recent, draw, log = self._recent, rng.random, math.log
        size = self._recent_count if self._recent_count < _RECENT else _RECENT
        cap = full - decode
        span = tokens * decode
        arrival = -log(1.0 - draw()) / rate - head  # exponential gaps, as expovariate draws
        while arrival < span:
            one = recent[int(draw() * size)]
            span += one if one < cap else cap
            if span >= longest:
                return longest
            arrival -= log(1.0 - draw()) / rate
        return span

    def _finish(self, request: R, state: _Admitted, *, decoding: bool) -> None:
        now = self._loop.now
        if decoding:
            request.itl_s = (now - state.ttft) / (request.output_tokens - 1)
        else:
            request.first_token_at = now
            request.itl_s = None  # one token: no inter-token latency
            self._sink.first_token(request, now)
        request.finished_at = now
        request.replica_state = None
        del self._in_flight[id(request)]
        state.phase = _GONE
        self._release(state, decoding=decoding)
        self._sink.finished(request, now)
        self._admit_waiting(boundary=True)

    def _release(self, state: _Admitted, *, decoding: bool) -> None:
        self._running -= 1
        self._free_blocks += state.blocks
        self._context_sum -= state.context
        self._prompt_sum -= state.prompt
        if decoding:
            self._decoders -= 1
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


def _bucket(value: int) -> tuple[int, int]:
    """(index, middle) of ``value``'s bucket: exact below 16, then 8 buckets per octave."""
    if value < 16:
        return value, max(1, value)
    octave = value.bit_length() - 4  # value >> octave is in 8..15
    eighth = value >> octave
    return 16 + (octave << 3) + eighth - 8, ((eighth << 1) + 1) << octave >> 1


def _chunks(tokens: int, prompt: int) -> list[tuple[int, int]]:
    """``tokens`` prefill tokens as whole prompts of ``prompt`` tokens and one partial."""
    whole, rest = divmod(tokens, max(prompt, 16))
    return [(max(prompt, 16), 0)] * whole + ([(rest, 0)] if rest else [])
