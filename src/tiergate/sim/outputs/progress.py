"""The progress bar of a running simulation: how far through its virtual time, how many
requests so far, wall time spent and left.

It is driven from the event loop at a fixed step of virtual time, never from the per-request
path, and redraws at most a few times a second of wall time (rich's own refresh), so a week
simulated in a minute costs it a few thousand updates.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from tiergate.sim.loop import EventLoop
from tiergate.sim.outputs.table import clock, duration_text


class SimProgress:
    """A rich progress bar over ``duration_s`` of virtual time from ``start_s`` (on stderr
    unless a console is given). Use it as a context manager; :meth:`attach` has the event
    loop update it, or call :meth:`update` yourself."""

    __slots__ = ("_bar", "_task", "duration_s", "start_s")

    def __init__(self, start_s: float, duration_s: float, *, console: Console | None = None):
        self.start_s = start_s
        self.duration_s = duration_s
        self._bar = Progress(
            TextColumn("simulating"),
            BarColumn(),
            TextColumn("{task.fields[clock]}"),
            TextColumn("{task.fields[requests]} requests"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console or Console(stderr=True, highlight=False, emoji=False),
        )
        self._task: TaskID = self._bar.add_task(
            "simulate", total=max(duration_s, 1e-9), clock="", requests="0"
        )
        self.update(start_s, 0)

    def update(self, now: float, requests: int) -> None:
        """The run has reached virtual time ``now`` with ``requests`` arrived so far."""
        done = min(max(now - self.start_s, 0.0), self.duration_s)
        self._bar.update(
            self._task,
            completed=done,
            clock=f"{clock(done)} / {duration_text(self.duration_s)}",
            requests=f"{requests:,}",
        )

    def attach(self, loop: EventLoop, requests: Callable[[], int], every_s: float) -> None:
        """Update every ``every_s`` of virtual time until the end of the run, and no further:
        the ticks must not keep a loop that runs until it is empty running forever."""
        if every_s <= 0:
            raise ValueError(f"every_s must be > 0, got {every_s}")
        end = self.start_s + self.duration_s

        def tick() -> None:
            self.update(loop.now, requests())
            if loop.now + every_s <= end:
                loop.after(every_s, tick)
            elif loop.now < end:
                loop.at(end, tick)

        loop.at(self.start_s, tick)

    def __enter__(self) -> SimProgress:
        self._bar.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._bar.stop()
