"""The simulator's clock: a discrete-event loop in virtual seconds.

Events are callables run at their time, in time order, ties in the order they were scheduled
(so a run is deterministic). Nothing here reads a wall clock. A cancelled event stays in the
heap and is skipped when its time comes, which keeps cancelling O(1).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

Action = Callable[[], None]


class Timer:
    """A scheduled event; :meth:`cancel` keeps it from running."""

    __slots__ = ("action", "at")

    def __init__(self, at: float, action: Action | None) -> None:
        self.at = at
        self.action = action

    def cancel(self) -> None:
        self.action = None

    @property
    def pending(self) -> bool:
        return self.action is not None


class EventLoop:
    """Runs actions at virtual times; ``now`` is the time of the action running."""

    __slots__ = ("_heap", "_seq", "events", "now")

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = 0
        self.events = 0  # actions run so far

    def at(self, when: float, action: Action) -> Timer:
        """Run ``action`` at ``when`` (not before ``now``: a past time runs at ``now``)."""
        # Called several times per simulated request: a comparison rather than max(), and
        # one increment of the sequence (the tie-breaker) read back once.
        now = self.now
        if when < now:  # noqa: PLR1730
            when = now
        timer = Timer(when, action)
        self._seq = seq = self._seq + 1
        heapq.heappush(self._heap, (when, seq, timer))
        return timer

    def after(self, delay: float, action: Action) -> Timer:
        """Run ``action`` ``delay`` seconds from now."""
        # at(), written out: every attempt's first-byte deadline comes through here.
        when = self.now + delay
        if when < self.now:  # noqa: PLR1730
            when = self.now
        timer = Timer(when, action)
        self._seq = seq = self._seq + 1
        heapq.heappush(self._heap, (when, seq, timer))
        return timer

    def every(self, interval: float, action: Action, *, first: float | None = None) -> None:
        """Run ``action`` every ``interval`` seconds, first at ``first`` (default: now), for as
        long as the loop runs."""
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")

        def tick() -> None:
            action()
            self.after(interval, tick)

        self.at(self.now if first is None else first, tick)

    def run(self, until: float | None = None) -> None:
        """Run events in time order until none is left or the next is after ``until`` (then
        ``now`` is ``until``)."""
        heap = self._heap
        pop = heapq.heappop
        # One loop per case, so that the common one (``until`` given: the feed runs the loop
        # up to each arrival) tests nothing else per event; the count of events run is added
        # once at the end (an action never reads it).
        ran = 0
        if until is None:
            while heap:
                when, _, timer = pop(heap)
                action = timer.action
                if action is not None:
                    timer.action = None
                    self.now = when
                    ran += 1
                    action()
            self.events += ran
            return
        while heap:
            when, _, timer = heap[0]
            if when > until:
                self.now = until
                self.events += ran
                return
            pop(heap)
            action = timer.action
            if action is not None:
                timer.action = None
                self.now = when
                ran += 1
                action()
        self.events += ran
        self.now = max(self.now, until)

    def next_at(self) -> float | None:
        """The time of the next event scheduled (a cancelled one included), ``None`` if none."""
        heap = self._heap
        return heap[0][0] if heap else None

    def __len__(self) -> int:
        """Events scheduled (cancelled ones included until their time comes)."""
        return len(self._heap)
