"""The error-rate circuit breaker behind the seed's ``errorRate: "> 0.1"`` fallback condition.

A pure policy: every method takes ``now`` (seconds on a monotonic clock) instead of reading a
clock, so the gateway and the simulator drive it the same way.

States::

    CLOSED --(error rate over the window exceeds the threshold)--> OPEN
    OPEN --(cooldown_s elapsed, first try_acquire)--> HALF_OPEN (one probe in flight)
    HALF_OPEN --(probe ok)--> CLOSED (empty window)
    HALF_OPEN --(probe failed)--> OPEN (cooldown restarts)
"""

from __future__ import annotations

import enum
import math

from tiergate.spec.comparator import Threshold
from tiergate.spec.fleet import BreakerSettings

# The window is split into this many buckets: memory and per-call work stay bounded whatever the
# request rate, at the price of the window edge being up to one bucket (window_s / 60) early.
_BUCKETS = 60


class BreakerState(enum.StrEnum):
    """What the breaker lets through: everything, nothing, or a single probe."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class _Window:
    """Ok/failed counts over the last ``window_s`` seconds, in fixed time buckets."""

    __slots__ = ("_failed", "_failed_total", "_head", "_ok", "_ok_total", "_width")

    def __init__(self, window_s: float) -> None:
        self._width = window_s / _BUCKETS
        self._ok = [0] * _BUCKETS
        self._failed = [0] * _BUCKETS
        self._ok_total = 0
        self._failed_total = 0
        # Absolute index (now // width) of the newest bucket; None while empty.
        self._head: int | None = None

    def clear(self) -> None:
        self._ok = [0] * _BUCKETS
        self._failed = [0] * _BUCKETS
        self._ok_total = self._failed_total = 0
        self._head = None

    def _advance(self, now: float) -> int:
        """Expire the buckets that fell out of the window at ``now``; return the current slot."""
        index = math.floor(now / self._width)
        head = self._head
        if head is None or index - head >= _BUCKETS:
            # Empty, or a jump past the whole window: nothing survives.
            if head is not None:
                self.clear()
            head = index
        elif index > head:
            for expired in range(head + 1, index + 1):
                slot = expired % _BUCKETS
                self._ok_total -= self._ok[slot]
                self._failed_total -= self._failed[slot]
                self._ok[slot] = self._failed[slot] = 0
            head = index
        # A clock that steps back (only possible with a hand-driven clock) lands in the newest
        # bucket rather than rewriting history.
        self._head = head
        return head % _BUCKETS

    def add(self, now: float, ok: bool) -> tuple[int, int]:
        """Count one outcome at ``now``; return (failures, total) inside the window then."""
        slot = self._advance(now)
        if ok:
            self._ok[slot] += 1
            self._ok_total += 1
        else:
            self._failed[slot] += 1
            self._failed_total += 1
        # What counts(now) would return, without expiring the buckets a second time.
        return self._failed_total, self._failed_total + self._ok_total

    def counts(self, now: float) -> tuple[int, int]:
        """(failures, total) inside the window at ``now``."""
        self._advance(now)
        return self._failed_total, self._failed_total + self._ok_total


class Breaker:
    """Opens a tier's circuit while its error rate exceeds ``threshold``; probes it to close."""

    def __init__(self, threshold: Threshold, settings: BreakerSettings) -> None:
        if settings.window_s <= 0 or settings.cooldown_s < 0 or settings.min_requests < 1:
            raise ValueError(f"invalid breaker settings: {settings}")
        self._threshold = threshold
        self._settings = settings
        self._window = _Window(settings.window_s)
        self._state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._probe_in_flight = False

    def state(self, now: float) -> BreakerState:
        """The state at ``now``; an OPEN breaker whose cooldown has elapsed reports HALF_OPEN."""
        if self._state is BreakerState.OPEN and self._cooled_down(now):
            return BreakerState.HALF_OPEN
        return self._state

    def try_acquire(self, now: float) -> bool:
        """May a request be sent to the tier now?

        CLOSED: always. OPEN: not before the cooldown; after it, exactly one caller gets True
        (the probe) until its outcome is recorded or the probe is released.
        """
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN:
            if not self._cooled_down(now):
                return False
            self._state = BreakerState.HALF_OPEN
        if self._probe_in_flight:
            return False
        self._probe_in_flight = True
        return True

    def record(self, now: float, ok: bool) -> None:
        """Record the outcome of a request that was sent to the tier."""
        if self._state is BreakerState.CLOSED:
            failures, total = self._window.add(now, ok)
            if total >= self._settings.min_requests and self._threshold.exceeded_by(
                failures / total
            ):
                self._open(now)
        elif self._state is BreakerState.HALF_OPEN and self._probe_in_flight:
            self._probe_in_flight = False
            if ok:
                self._state = BreakerState.CLOSED
                self._window.clear()
            else:
                self._open(now)
        # Otherwise OPEN (or HALF_OPEN with no probe out): a request that was in flight when the
        # breaker opened says nothing new about whether the tier recovered.

    def release(self, now: float) -> None:
        """The probe was acquired but never sent or recorded: let another caller probe."""
        if self._state is BreakerState.HALF_OPEN:
            self._probe_in_flight = False

    def error_rate(self, now: float) -> float | None:
        """Failure share over the window; None below ``min_requests`` outcomes."""
        failures, total = self._window.counts(now)
        if total < self._settings.min_requests:
            return None
        return failures / total

    def _open(self, now: float) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = now
        self._probe_in_flight = False
        # The window is kept so error_rate() still shows what tripped the breaker; it is cleared
        # when a probe closes it, so old failures cannot trip it again at once.

    def _cooled_down(self, now: float) -> bool:
        return now - self._opened_at >= self._settings.cooldown_s
