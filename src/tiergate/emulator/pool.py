"""An emulated Deployment: replicas that an autoscaler asks for, start cold and are given back.

The actuator side of the scaling loop in tests and benchmarks, where Kubernetes would be in a
cluster: :meth:`EmulatorPool.scale_to` starts replicas (not ready for the config's cold start)
or gives back the newest ones (those still starting first, as the ReplicaSet controller deletes
not-ready pods first); a replica given back takes no new request and closes once its requests
have finished. Requests go round robin over the ready replicas, as a Service spreads them.

Replica-seconds count from a replica's start to its close, ready or not: a starting pod holds
its GPU as much as a serving one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from tiergate.emulator.config import EmulatorConfig
from tiergate.emulator.replica import Replica
from tiergate.scaling.snapshot import ReplicaCount

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Member:
    replica: Replica
    started: float  # wall clock
    ready_at: float  # wall clock, expected
    in_flight: int = 0
    closed: bool = False
    idle: asyncio.Event = field(default_factory=asyncio.Event)  # set while nothing is in flight

    def __post_init__(self) -> None:
        self.idle.set()


class EmulatorPool:
    """Replicas of one emulated deployment on ``host`` (each on a free port).

    It is the scaler's :class:`~tiergate.scaling.replicas.ReplicaSource` for deployment
    ``name``; ``to_caller`` maps this pool's clock to the scaler's (identity: the same clock).
    ``drain_timeout_s`` (wall) bounds how long a replica given back waits for its requests.
    Use as ``async with``.
    """

    def __init__(
        self,
        config: EmulatorConfig,
        name: str,
        *,
        to_caller: Callable[[float], float] = lambda at: at,
        host: str = "127.0.0.1",
        drain_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.name = name
        self._to_caller = to_caller
        self._perf = config.perf_model()
        self._host = host
        self._drain_timeout_s = drain_timeout_s
        self._clock = clock
        self._members: list[_Member] = []  # asked for: starting or ready
        self._draining: list[_Member] = []  # given back, not closed yet
        self._leaving: set[asyncio.Task[None]] = set()
        self._next_index = 0
        self._turn = 0
        self._closed_seconds = 0.0  # replica-seconds of replicas already closed

    @property
    def cold_start_s(self) -> float:
        """Wall seconds from a cold replica's start to ready."""
        return self.config.cold_start_s(self._perf) / self.config.speed

    def __len__(self) -> int:
        """Replicas asked for: starting or ready (not those given back)."""
        return len(self._members)

    @property
    def leaving(self) -> int:
        """Replicas given back and not closed yet (draining their requests)."""
        return len(self._draining)

    def ready(self) -> list[Replica]:
        return [member.replica for member in self._members if member.replica.ready]

    async def count(self, deployment: str, now: float) -> ReplicaCount | None:
        """Ready and pending replicas (``None`` for another deployment than this pool's)."""
        if deployment != self.name:
            return None
        pending = sorted(m.ready_at for m in self._members if not m.replica.ready)
        return ReplicaCount(
            ready=len(self._members) - len(pending),
            pending=len(pending),
            pending_ready_at=tuple(self._to_caller(at) for at in pending),
        )

    def replica_seconds(self) -> float:
        """Wall seconds replicas have existed, summed over replicas (those draining included)."""
        now = self._clock()
        members = (*self._members, *self._draining)
        alive = sum(now - member.started for member in members if not member.closed)
        return self._closed_seconds + alive

    async def scale_to(self, replicas: int, *, cold: bool = True) -> None:
        """Start or give back replicas until ``replicas`` are asked for; new ones start
        ``cold`` (not ready for the cold start) or ready at once."""
        if replicas < 0:
            raise ValueError(f"replicas must be >= 0, got {replicas}")
        while len(self._members) < replicas:
            await self._add(cold)
        while len(self._members) > replicas:
            self._give_back()

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[Replica | None]:
        """The next ready replica (round robin), counted as busy while the block runs;
        ``None`` when none is ready."""
        serving = [member for member in self._members if member.replica.ready]
        if not serving:
            yield None
            return
        member = serving[self._turn % len(serving)]
        self._turn += 1
        member.in_flight += 1
        member.idle.clear()
        try:
            yield member.replica
        finally:
            member.in_flight -= 1
            if not member.in_flight:
                member.idle.set()

    async def close(self) -> None:
        """Close every replica at once (requests in flight are cut off)."""
        members, self._members = [*self._members, *self._draining], []
        self._draining = []
        for task in list(self._leaving):
            task.cancel()
        if self._leaving:
            await asyncio.wait(self._leaving)
        for member in members:
            await self._close(member)

    async def __aenter__(self) -> EmulatorPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- internals ---------------------------------------------------------------------------

    async def _add(self, cold: bool) -> None:
        replica = Replica(
            self.config, self._next_index, host=self._host, perf=self._perf, clock=self._clock
        )
        self._next_index += 1
        now = self._clock()  # the replica's cold start runs from its start
        await replica.start(cold=cold)
        self._members.append(_Member(replica, now, now + (self.cold_start_s if cold else 0.0)))

    def _give_back(self) -> None:
        """The newest replica leaves: no new requests from now, closed once drained."""
        starting = [m for m in self._members if not m.replica.ready]
        member = (starting or self._members)[-1]
        self._members.remove(member)
        self._draining.append(member)
        task = asyncio.get_running_loop().create_task(self._drain(member))
        self._leaving.add(task)
        task.add_done_callback(self._leaving.discard)

    async def _drain(self, member: _Member) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(member.idle.wait(), self._drain_timeout_s)
        if member.in_flight:
            log.warning(
                "replica %d closed with %d requests in flight after %.0f s of drain",
                member.replica.index,
                member.in_flight,
                self._drain_timeout_s,
            )
        await self._close(member)
        self._draining.remove(member)

    async def _close(self, member: _Member) -> None:
        if member.closed:
            return
        await member.replica.close()
        member.closed = True
        self._closed_seconds += self._clock() - member.started
