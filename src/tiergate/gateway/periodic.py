"""Background loops of the gateway: one task per tier, each running a step at an interval."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

Listener = Callable[[str, bool], None]


class Periodic:
    """Runs ``step(tier)`` for each tier every ``interval_s`` seconds, one step at a time."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, steps: dict[str, tuple[float, Callable[[str], Awaitable[object]]]]) -> None:
        """Start one loop per tier; each runs its first step at once."""
        if self._tasks:
            raise RuntimeError(f"{self._name} already started")
        self._tasks = [
            asyncio.create_task(_loop(tier, interval, step), name=f"{self._name}:{tier}")
            for tier, (interval, step) in steps.items()
        ]

    async def stop(self) -> None:
        """Cancel the loops and wait for them to finish."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            # wait() rather than gather(): it neither raises the tasks' CancelledError nor
            # swallows a cancellation of stop() itself.
            await asyncio.wait(tasks)


async def _loop(tier: str, interval: float, step: Callable[[str], Awaitable[object]]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        # Steps start interval apart, one at a time (back to back if one runs longer).
        next_at = loop.time() + interval
        await step(tier)
        await asyncio.sleep(max(0.0, next_at - loop.time()))


def notify(listener: Listener | None, tier: str, value: bool) -> None:
    """Tell ``listener`` of a change; a failing listener is logged, never fatal."""
    if listener is None:
        return
    try:
        listener(tier, value)
    except Exception:
        # A faulty listener must not stop the loop that observed the change.
        logger.exception("change listener failed for tier %s", tier)
