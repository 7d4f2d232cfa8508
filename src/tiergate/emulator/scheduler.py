"""A continuous-batching scheduler modelled on vLLM V1's, in virtual time.

Pure: no asyncio, no clock. The caller passes the time of each step's start and end, so the
emulator drives it on the wall clock and the simulator in discrete-event time with the same
code. One step is two calls::

    step = scheduler.schedule(now)           # choose the batch; step.duration from the perf model
    done = scheduler.complete(step, now + step.duration)   # advance every sequence at once

What it models (vLLM V1 ``vllm/v1/core/sched/scheduler.py``, FCFS policy, no prefix caching):

- at most ``max_num_seqs`` running requests and ``max_num_batched_tokens`` tokens per step;
- running decodes are scheduled first (one token each), then running partial prefills, then
  waiting requests in FIFO order while the token budget lasts; a prompt longer than what is
  left of the budget is prefilled in chunks over several steps (chunked prefill);
- KV cache in blocks of ``block_size`` tokens, allocated as a request grows, from a fixed pool;
- when a running request needs a block and none is free, the most recently admitted running
  request is preempted in recompute mode: its blocks are freed and it goes back to the front
  of the waiting queue, to prefill its prompt and the tokens it generated again;
- waiting requests are admitted only in steps without preemptions (as V1 does);
- a request whose prefill completes samples its first token at the end of that step; every
  later step that schedules it produces one more token, until it has ``output_tokens``.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


class StepCost(Protocol):
    """What the scheduler needs from the performance model (``tiergate.perf.PerfModel``)."""

    def step_time(
        self, prefill: Sequence[tuple[int, int]], decode_contexts: Sequence[int]
    ) -> float: ...


class State(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"
    ABORTED = "aborted"


@dataclass(slots=True, eq=False)
class EngineRequest:
    """One request inside the engine; times are the scheduler's (virtual) seconds.

    ``output_tokens`` is how many tokens it generates before it finishes with
    ``finish_reason`` ("length" when that is the request's ``max_tokens``, "stop" when the
    emulated model ended earlier).
    """

    request_id: int
    prompt_tokens: int
    output_tokens: int
    arrival: float
    finish_reason: str = "length"
    state: State = State.WAITING
    num_output: int = 0
    num_computed: int = 0  # tokens whose KV is in the cache
    blocks: int = 0
    preemptions: int = 0
    scheduled_at: float | None = None  # first time it was scheduled
    first_token_at: float | None = None
    last_token_at: float | None = None
    prev_token_at: float | None = None  # the token before the last: inter-token latency

    @property
    def num_tokens(self) -> int:
        """Prompt plus generated tokens: what a recompute after preemption prefills again."""
        return self.prompt_tokens + self.num_output

    @property
    def finished(self) -> bool:
        return self.state is State.FINISHED or self.state is State.ABORTED


@dataclass(frozen=True, slots=True)
class SchedulerLimits:
    """vLLM's scheduler settings, with its defaults."""

    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    block_size: int = 16

    def __post_init__(self) -> None:
        if self.max_num_seqs < 1 or self.max_num_batched_tokens < 1 or self.block_size < 1:
            raise ValueError("max_num_seqs, max_num_batched_tokens and block_size must be >= 1")


@dataclass(slots=True)
class Step:
    """One engine step as scheduled: which requests run how many tokens, and for how long."""

    start: float
    duration: float
    batch: list[tuple[EngineRequest, int]]
    preempted: list[EngineRequest]
    num_tokens: int  # tokens scheduled: prefill chunks plus one per decode


@dataclass(slots=True)
class StepResult:
    """What one completed step produced."""

    end: float
    emitted: list[EngineRequest] = field(default_factory=list)  # one new token each
    first_tokens: list[EngineRequest] = field(default_factory=list)  # their first token
    finished: list[EngineRequest] = field(default_factory=list)


class Scheduler:
    """The batch of one engine replica: waiting queue, running set and KV block pool."""

    def __init__(self, cost: StepCost, kv_blocks: int, limits: SchedulerLimits) -> None:
        if kv_blocks < 1:
            raise ValueError(f"the KV cache must hold at least one block, got {kv_blocks}")
        self.cost = cost
        self.limits = limits
        self.total_blocks = kv_blocks
        self.free_blocks = kv_blocks
        self.waiting: deque[EngineRequest] = deque()
        self.running: list[EngineRequest] = []  # in admission order: the last is preempted first

    # -- state -------------------------------------------------------------------------------

    @property
    def capacity_tokens(self) -> int:
        """The most tokens one request may hold: the whole KV pool."""
        return self.total_blocks * self.limits.block_size

    @property
    def kv_usage(self) -> float:
        """Fraction (0-1) of KV blocks in use: ``vllm:kv_cache_usage_perc``."""
        return 1.0 - self.free_blocks / self.total_blocks

    def has_work(self) -> bool:
        return bool(self.running or self.waiting)

    # -- requests ----------------------------------------------------------------------------

    def add(self, request: EngineRequest) -> None:
        """Queue a request at the back of the waiting queue."""
        if request.prompt_tokens < 1 or request.output_tokens < 1:
            raise ValueError("a request needs at least one prompt and one output token")
        if request.prompt_tokens + request.output_tokens > self.capacity_tokens:
            # It could never run to the end, even alone: vLLM rejects it before it gets here.
            raise ValueError(
                f"{request.prompt_tokens + request.output_tokens} tokens exceed the KV cache "
                f"({self.capacity_tokens} tokens)"
            )
        request.state = State.WAITING
        self.waiting.append(request)

    def abort(self, request: EngineRequest) -> None:
        """Drop a request (its client went away): free its blocks at once."""
        if request.finished:
            return
        if request.state is State.RUNNING:
            self.running.remove(request)
        else:
            self.waiting.remove(request)
        self._free(request)
        request.state = State.ABORTED

    # -- one step ----------------------------------------------------------------------------

    def schedule(self, now: float) -> Step:
        """Choose the next batch at ``now``; an empty batch (nothing to do) lasts 0 s."""
        budget = self.limits.max_num_batched_tokens
        batch: dict[EngineRequest, int] = {}
        preempted: list[EngineRequest] = []
        # Decodes first (one token each), then prefills already under way, in admission order.
        decodes: list[EngineRequest] = []
        prefills: list[EngineRequest] = []
        for r in self.running:
            remaining = r.prompt_tokens + r.num_output - r.num_computed
            (decodes if remaining == 1 else prefills).append(r)
        for request in decodes + prefills:
            if request.state is not State.RUNNING:
                continue  # preempted earlier in this step
            if budget == 0:
                break
            # (num_tokens written out: a property costs a call per request and step)
            count = min(request.prompt_tokens + request.num_output - request.num_computed, budget)
            while not self._allocate(request, count):
                victim = self.running.pop()
                budget += batch.pop(victim, 0)  # it may already be in this step's batch
                self._preempt(victim)
                preempted.append(victim)
                if victim is request:
                    break
            if request.state is State.RUNNING:
                batch[request] = count
                budget -= count
        if not preempted:
            self._admit(now, budget, batch)
        return self._priced(now, batch, preempted)

    def complete(self, step: Step, end: float) -> StepResult:
        """Advance every request of ``step`` as of ``end``: computed tokens, new tokens, ends."""
        result = StepResult(end)
        for request, count in step.batch:
            if request.state is not State.RUNNING:
                continue  # aborted while the step ran
            request.num_computed += count
            if request.num_computed < request.prompt_tokens + request.num_output:
                continue  # a prefill chunk, not the last one
            request.num_output += 1
            request.prev_token_at = request.last_token_at
            request.last_token_at = end
            result.emitted.append(request)
            if request.first_token_at is None:
                request.first_token_at = end
                result.first_tokens.append(request)
            if request.num_output >= request.output_tokens:
                request.state = State.FINISHED
                self._free(request)
                result.finished.append(request)
        if result.finished:
            self.running = [r for r in self.running if r.state is State.RUNNING]
        return result

    # -- internals ---------------------------------------------------------------------------

    def _admit(self, now: float, budget: int, batch: dict[EngineRequest, int]) -> None:
        while self.waiting and budget > 0 and len(self.running) < self.limits.max_num_seqs:
            request = self.waiting[0]
            count = min(request.num_tokens - request.num_computed, budget)
            if not self._allocate(request, count):
                break  # FIFO: the head waits for blocks, nobody overtakes it
            self.waiting.popleft()
            request.state = State.RUNNING
            self.running.append(request)
            if request.scheduled_at is None:
                request.scheduled_at = now
            batch[request] = count
            budget -= count

    def _priced(
        self, now: float, batch: dict[EngineRequest, int], preempted: list[EngineRequest]
    ) -> Step:
        prefill: list[tuple[int, int]] = []
        decode_contexts: list[int] = []
        for request, count in batch.items():
            held = request.prompt_tokens + request.num_output  # its num_tokens
            if count == 1 and request.num_computed == held - 1 > 0:
                decode_contexts.append(held)
            else:
                prefill.append((count, request.num_computed))
        tokens = sum(batch.values())
        duration = self.cost.step_time(prefill, decode_contexts) if batch else 0.0
        return Step(now, duration, list(batch.items()), preempted, tokens)

    def _allocate(self, request: EngineRequest, count: int) -> bool:
        size = self.limits.block_size
        needed = -(-(request.num_computed + count) // size) - request.blocks
        if needed <= 0:
            return True
        if needed > self.free_blocks:
            return False
        self.free_blocks -= needed
        request.blocks += needed
        return True

    def _preempt(self, request: EngineRequest) -> None:
        self._free(request)
        request.num_computed = 0
        request.preemptions += 1
        request.state = State.WAITING
        self.waiting.appendleft(request)

    def _free(self, request: EngineRequest) -> None:
        self.free_blocks += request.blocks
        request.blocks = 0
