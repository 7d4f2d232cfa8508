"""What the cascade consults per tier, and the order one request walks the tiers: pure.

:class:`TierGates` holds each tier's verdicts (up or down from the health checker, saturated
or not from the saturation monitor) and its error-rate :class:`~tiergate.gateway.breaker.Breaker`.
:class:`CascadeWalk` is one request's way down the cascade: the next tier to attempt, whether a
tier is left after it (for ``latencyMs``), and the tiers skipped on the way. Neither reads a
clock, does I/O or touches metrics: ``tiergate serve`` drives them in real time (the router sets
the verdicts, ``run_cascade`` iterates the walk) and the simulator drives the very same objects
in virtual time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from tiergate.gateway.breaker import Breaker, BreakerState
from tiergate.gateway.cascade import Skip, skip_reason
from tiergate.spec import FallbackPolicy, Fleet

BreakerListener = Callable[[str, BreakerState], None]
Skipped = tuple[tuple[str, str], ...]

_NONE_SKIPPED: Skipped = ()


class TierGates:
    """Per tier: up or down, saturated or not, and its breaker (when the fleet sets
    ``errorRate``). Every tier starts up and unsaturated, as the live monitors do.

    ``on_breaker(name, state)`` is told the breaker's state wherever it may have changed (the
    gateway shows it as a gauge); the simulator leaves it out.
    """

    __slots__ = ("_breakers", "_down", "_names", "_on_breaker", "_saturated")

    def __init__(self, fleet: Fleet, *, on_breaker: BreakerListener | None = None) -> None:
        self._names = tuple(tier.name for tier in fleet.tiers)
        threshold = fleet.fallback.error_rate
        self._breakers: dict[str, Breaker] = (
            {name: Breaker(threshold, fleet.breaker) for name in self._names} if threshold else {}
        )
        # Sets of the exceptions: the common case (up, unsaturated) is one failed lookup each.
        self._down: set[str] = set()
        self._saturated: set[str] = set()
        self._on_breaker = on_breaker

    @property
    def names(self) -> tuple[str, ...]:
        """Every tier of the fleet: the cascade in order, then those outside it."""
        return self._names

    @property
    def has_breakers(self) -> bool:
        """Whether the fleet's ``errorRate`` condition gave every tier a breaker."""
        return bool(self._breakers)

    def set_up(self, name: str, up: bool) -> None:
        """The health checker's verdict on tier ``name``."""
        if up:
            self._down.discard(name)
        else:
            self._down.add(name)

    def set_saturated(self, name: str, saturated: bool) -> None:
        """The saturation monitor's verdict on tier ``name``."""
        if saturated:
            self._saturated.add(name)
        else:
            self._saturated.discard(name)

    def is_up(self, name: str) -> bool:
        """Whether the health checker last said tier ``name`` is up (a tier without checks is)."""
        return name not in self._down

    def is_saturated(self, name: str) -> bool:
        """Whether the saturation monitor last said tier ``name`` is saturated."""
        return name in self._saturated

    def skip(self, name: str, now: float) -> Skip | None:
        """Why tier ``name`` is not to be attempted now, or ``None`` to attempt it.

        Asking takes the breaker's half-open probe when one is due (the caller then owes the
        breaker an outcome: :meth:`record`, or :meth:`release`); a saturated tier gives the
        probe back at once, as it is only a last resort for now.
        """
        healthy = name not in self._down
        saturated = name in self._saturated
        breaker = self._breakers.get(name)
        if breaker is None or not healthy:
            return skip_reason(healthy=healthy, breaker_allows=True, saturated=saturated)
        reason = skip_reason(healthy=True, breaker_allows=breaker.try_acquire(now), saturated=False)
        if reason is None and saturated:
            breaker.release(now)  # the probe (if this was one) is not used now
            return Skip.SATURATED
        if self._on_breaker is not None:
            self._on_breaker(name, breaker.state(now))
        return reason

    def may_attempt(self, name: str, now: float) -> bool:
        """Whether tier ``name`` could be attempted now, judged without taking a breaker probe
        (the cascade asks it of the tiers after the one it tries; saturation does not count:
        a saturated tier is still a last resort)."""
        if name in self._down:
            return False
        breaker = self._breakers.get(name)
        return breaker is None or breaker.state(now) is not BreakerState.OPEN

    def record(self, name: str, now: float, ok: bool) -> None:
        """Feed an attempt's outcome to the tier's breaker."""
        breaker = self._breakers.get(name)
        if breaker is not None:
            breaker.record(now, ok)
            if self._on_breaker is not None:
                self._on_breaker(name, breaker.state(now))

    def release(self, name: str, now: float) -> None:
        """An acquired attempt was abandoned without an outcome (client went away)."""
        breaker = self._breakers.get(name)
        if breaker is not None:
            breaker.release(now)

    def breaker_state(self, name: str, now: float) -> BreakerState | None:
        """The state of tier ``name``'s breaker at ``now``; ``None`` without breakers."""
        breaker = self._breakers.get(name)
        return None if breaker is None else breaker.state(now)

    def usable(self, now: float) -> dict[str, bool]:
        """Per tier: could a request be attempted there now (without consuming a probe)."""
        return {name: self.may_attempt(name, now) for name in self._names}


class WalkStep(NamedTuple):
    """The next tier to attempt; ``tier_left``: whether another could follow it (for
    ``latencyMs``); ``skipped``: the (tier, reason) skips passed to get here.

    A tuple rather than a dataclass: one is built per attempt, and a tuple is the cheapest.
    """

    tier: str
    tier_left: bool
    skipped: Skipped


def _present(name: str) -> Skip | None:
    """Every tier has a provider: the simulator's case."""
    return None


class CascadeWalk:
    """The order one request tries the tiers of its cascade.

    First pass, in cascade order: tiers that ``absent`` or the gates skip are passed over,
    saturated ones kept aside; then the saturated ones, in the same order, as last resorts
    (saturation is not failure). ``absent(name)`` says whether a tier cannot serve this request
    at all (the gateway: no provider, or none for the endpoint).
    """

    __slots__ = (
        "_absent",
        "_gates",
        "_index",
        "_latency",
        "_position",
        "_saturated",
        "_tiers",
        "last_skipped",
    )

    def __init__(
        self,
        tiers: tuple[str, ...],
        gates: TierGates,
        policy: FallbackPolicy,
        absent: Callable[[str], Skip | None] = _present,
    ) -> None:
        self._tiers = tiers
        self._gates = gates
        # Only latencyMs asks whether a tier is left: without it, no per-request look-ahead.
        self._latency = policy.latency_ms is not None
        self._absent = absent
        self._index = 0  # the next tier of the first pass
        self._saturated: list[str] = []
        self._position = 0  # the next saturated tier of the second pass
        # The skips the latest next() passed: the only place to find them once it returned
        # None (a move to "none" from the last tier skipped).
        self.last_skipped: Skipped = _NONE_SKIPPED

    def next(self, now: float) -> WalkStep | None:
        """The next tier to attempt at ``now``, or ``None`` when nothing is left.

        Skipping a tier may take its breaker's probe (see :meth:`TierGates.skip`): the tier
        returned must get an outcome (``record``) or be released.
        """
        tiers = self._tiers
        count = len(tiers)
        skipped: list[tuple[str, str]] | None = None
        while self._index < count:
            index = self._index
            name = tiers[index]
            self._index = index + 1
            reason = self._absent(name)
            if reason is None:
                reason = self._gates.skip(name, now)
                if reason is None:
                    done = _NONE_SKIPPED if skipped is None else tuple(skipped)
                    self.last_skipped = done
                    tier_left = self._latency and (
                        bool(self._saturated) or self._any_left(index + 1, now)
                    )
                    return WalkStep(name, tier_left, done)
                if reason is Skip.SATURATED:
                    self._saturated.append(name)
            if skipped is None:
                skipped = []
            skipped.append((name, reason.value))
        done = _NONE_SKIPPED if skipped is None else tuple(skipped)
        self.last_skipped = done
        saturated = self._saturated
        position = self._position
        if position < len(saturated):
            self._position = position + 1
            last = position == len(saturated) - 1
            return WalkStep(saturated[position], self._latency and not last, done)
        return None

    def _any_left(self, start: int, now: float) -> bool:
        """Whether a tier after ``start - 1`` could be attempted now (no probe taken)."""
        absent, gates = self._absent, self._gates
        for name in self._tiers[start:]:
            if absent(name) is None and gates.may_attempt(name, now):
                return True
        return False
