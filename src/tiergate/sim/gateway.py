"""The gateway in virtual time: each request walks the fleet's cascade as ``tiergate serve``
would walk it, with the live code's decisions.

The walk (skips for unhealthy, breaker-open and saturated tiers, saturated tiers as last
resorts, ``tier_left`` for ``latencyMs``) is :class:`tiergate.gateway.gates.CascadeWalk`; the
breaker, health hysteresis and spillover thresholds are :class:`~tiergate.gateway.gates.TierGates`
and the fallback rules :mod:`tiergate.gateway.cascade`, all called here with the loop's time.
What is modelled instead of run is everything on the wire: a tier with no ready replica (or
in an outage) refuses the connection, an error fault answers its status at once, a first byte
later than the attempt's limit is a ``first_byte_timeout``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from tiergate.gateway.cascade import (
    Attempt,
    Verdict,
    entry_points,
    exhausted,
    first_byte_budget_s,
    is_tier_failure,
    judge_status,
)
from tiergate.gateway.gates import CascadeWalk, TierGates
from tiergate.sim.faults import HEALTHY, FaultState
from tiergate.sim.loop import EventLoop, Timer
from tiergate.sim.managed import ManagedTier
from tiergate.sim.replica import SimEngine
from tiergate.sim.request import SimRequest
from tiergate.sim.stats import LogHistogram
from tiergate.spec import Fleet

CONNECT_ERROR = "connect_error"  # the live transport's reason for a refused connection
FIRST_BYTE_TIMEOUT = "first_byte_timeout"
STATUS = "status"  # an upstream status listed in fallbackConditions
RESET = "reset"  # the connection dropped before the first byte


@dataclass(slots=True)
class TierStats:
    """What one tier served, as the client saw it."""

    requests: int = 0  # streams that started here (the client got 200)
    input_tokens: int = 0
    output_tokens: int = 0
    ttft: LogHistogram = field(default_factory=LogHistogram)
    itl: LogHistogram = field(default_factory=LogHistogram)
    fallbacks: dict[str, int] = field(default_factory=dict)  # reason -> requests that left

    def left(self, reason: str) -> None:
        self.fallbacks[reason] = self.fallbacks.get(reason, 0) + 1


class GpuTier:
    """A self-hosted tier: the replicas in rotation behind its Service."""

    __slots__ = ("name", "replicas", "rng")

    def __init__(self, name: str, rng: random.Random) -> None:
        self.name = name
        self.replicas: list[SimEngine] = []  # ready and in rotation
        self.rng = rng

    def pick(self) -> SimEngine | None:
        """A ready replica as a Kubernetes Service picks one (kube-proxy: at random)."""
        replicas = self.replicas
        if not replicas:
            return None
        if len(replicas) == 1:
            return replicas[0]
        return replicas[self.rng.randrange(len(replicas))]


Done = Callable[[SimRequest], None]


class SimGateway:
    """Routes each request through the cascade; tells ``done`` when its stream ended (or it
    failed) so the caller can count it."""

    def __init__(
        self,
        loop: EventLoop,
        fleet: Fleet,
        *,
        gates: TierGates,
        gpu_tiers: dict[str, GpuTier],
        managed: dict[str, ManagedTier],
        done: Done,
        rng: random.Random,
    ) -> None:
        self.loop = loop
        self.fleet = fleet
        self.policy = fleet.fallback
        self.gates = gates
        self.gpu = gpu_tiers
        self.managed = managed
        self.done = done
        self.first_byte_s = {tier.name: tier.timeouts.first_byte_s for tier in fleet.tiers}
        # Each attempt's first-byte limit depends only on its tier and whether a tier is left
        # after it: the live rule, asked once per pair here rather than once per attempt.
        self._limits = {
            (tier.name, left): self._limit(tier.name, left)
            for tier in fleet.tiers
            for left in (False, True)
        }
        self.stats = {tier.name: TierStats() for tier in fleet.tiers}
        self.entry = entry_points(fleet)[fleet.default_model]
        # Tiers whose replicas report every token's latency to the tier's histogram (iteration
        # level); the others report a mean per request.
        self.itl_per_token: set[str] = set()
        self.failed: dict[int, int] = {}  # final client status -> requests
        # Each tier's faults now (the simulation sets them as fault windows open and close).
        self.faults: dict[str, FaultState] = {tier.name: HEALTHY for tier in fleet.tiers}
        self.rng = rng

    # -- arrival and the walk ----------------------------------------------------------------

    def arrive(self, request: SimRequest) -> None:
        """A request reaches the gateway at ``loop.now`` for the fleet's default model."""
        request.walk = CascadeWalk(self.entry, self.gates, self.policy)
        self._next(request)

    def _next(self, request: SimRequest) -> None:
        walk = request.walk
        assert isinstance(walk, CascadeWalk)
        step = walk.next(self.loop.now)
        if step is None:
            for tier, reason in walk.last_skipped:
                self._moved(request, tier, reason)
            self._exhausted(request)
            return
        for tier, reason in step.skipped:
            self._moved(request, tier, reason)
        request.tier = step.tier
        request.attempts += 1
        request.attempt_started = self.loop.now
        if step.tier in self.gpu:
            self._attempt_gpu(request, self.gpu[step.tier], step.tier_left)
        else:
            self._attempt_managed(request, self.managed[step.tier], step.tier_left)

    def _moved(self, request: SimRequest, tier: str, reason: str) -> None:
        self.stats[tier].left(reason)
        if request.fallbacks is None:
            request.fallbacks = []
        request.fallbacks.append((tier, reason))

    # -- attempts ----------------------------------------------------------------------------

    def _limit(self, tier: str, tier_left: bool) -> float:
        return first_byte_budget_s(self.policy, self.first_byte_s[tier], tier_left=tier_left)

    def serving(self, name: str) -> bool:
        """Whether tier ``name`` answers at all now (what its health probe sees)."""
        if self.faults[name].outage:
            return False
        gpu = self.gpu.get(name)
        return gpu is None or bool(gpu.replicas)

    def _faulty(self, request: SimRequest, name: str) -> bool:
        """Whether a fault answered the attempt (a refused connection or an error status)."""
        state = self.faults[name]
        if state is HEALTHY:
            return False
        if state.outage:
            self._fail(request, CONNECT_ERROR, None)
            return True
        for rate, status in state.errors:
            if self.rng.random() < rate:
                self._status(request, status)
                return True
        return False

    def _attempt_gpu(self, request: SimRequest, tier: GpuTier, tier_left: bool) -> None:
        if self.faults[tier.name] is not HEALTHY and self._faulty(request, tier.name):
            return
        replica = tier.pick()
        if replica is None:  # a Service without endpoints refuses the connection
            self._fail(request, CONNECT_ERROR, None)
            return
        if not replica.fits(request):
            self._status(request, 400)  # vLLM: the prompt and max_tokens exceed the context
            return
        request.replica = replica
        request.timer = self.loop.after(
            self._limits[tier.name, tier_left], lambda: self._timed_out(request)
        )
        replica.submit(request)

    def _attempt_managed(self, request: SimRequest, tier: ManagedTier, tier_left: bool) -> None:
        name = request.tier or ""
        if self.faults[name] is not HEALTHY and self._faulty(request, name):
            return
        now = self.loop.now
        answer = tier.admit(now, request.prompt_tokens, request.output_tokens)
        if answer.status != 200:
            self._status(request, answer.status)
            return
        limit = self._limits[name, tier_left]
        if answer.ttft_s > limit:
            request.timer = self.loop.after(limit, lambda: self._timed_out(request))
            return
        first = now + answer.ttft_s
        end = now + max(answer.duration_s, answer.ttft_s)

        def first_token() -> None:
            request.first_token_at = first
            self.first_token(request, first)
            if request.output_tokens > 1:
                request.itl_s = (end - first) / (request.output_tokens - 1)
            self.loop.at(end, lambda: self.finished(request, end))

        self.loop.at(first, first_token)

    def _status(self, request: SimRequest, status: int) -> None:
        """The tier answered ``status`` before any token."""
        if judge_status(status, self.policy) is Verdict.FALLBACK:
            self._fail(request, STATUS, status)
            return
        tier = request.tier or ""
        self.gates.record(tier, self.loop.now, not is_tier_failure(status, self.policy))
        request.status = status
        self._end(request)

    def _fail(self, request: SimRequest, reason: str, status: int | None) -> None:
        tier = request.tier or ""
        now = self.loop.now
        self.gates.record(tier, now, False)
        self._moved(request, tier, reason)
        if request.failures is None:
            request.failures = []
        request.failures.append(Attempt(tier, reason, status, now - request.attempt_started))
        self._next(request)

    def _timed_out(self, request: SimRequest) -> None:
        replica = request.replica
        if replica is not None:
            replica.abort(request)
        request.replica = request.timer = None
        self._fail(request, FIRST_BYTE_TIMEOUT, None)

    def _exhausted(self, request: SimRequest) -> None:
        status, _, _ = exhausted(request.failures or [])
        request.status = status
        request.tier = None
        self._end(request)

    def _end(self, request: SimRequest) -> None:
        if request.status >= 400:
            self.failed[request.status] = self.failed.get(request.status, 0) + 1
        request.walk = None
        self.done(request)

    # -- ReplicaSink -------------------------------------------------------------------------

    def first_token(self, request: SimRequest, at: float) -> None:
        """The stream's first event: the commit point; the attempt is a success."""
        timer = request.timer
        if isinstance(timer, Timer):
            timer.cancel()
        request.timer = None
        tier = request.tier or ""
        self.gates.record(tier, at, True)
        request.status = 200
        stats = self.stats[tier]
        stats.requests += 1
        stats.ttft.add(at - request.arrival)

    def finished(self, request: SimRequest, at: float) -> None:
        request.finished_at = at
        request.replica = None
        tier = request.tier or ""
        stats = self.stats[tier]
        stats.input_tokens += request.prompt_tokens
        stats.output_tokens += request.output_tokens
        if request.itl_s is not None and tier not in self.itl_per_token:
            stats.itl.add_many(request.itl_s, request.output_tokens - 1)
        self._end(request)

    def lost(self, request: SimRequest) -> None:
        """Its replica went away (the pod stopped). Before the first token the connection
        reset is a failed attempt that moves on (``reset``, as the live transport names it);
        after it, the stream ends in an error, as the live relay ends it."""
        request.replica = None
        if request.first_token_at is None:
            timer = request.timer
            if isinstance(timer, Timer):
                timer.cancel()
            request.timer = None
            self._fail(request, RESET, None)
            return
        request.status = 502
        self.stats[request.tier or ""].requests -= 1  # counted when it started; it ends failed
        self._end(request)
