"""Active health checks of the tiers that set ``healthCheck`` (endpoint, intervalMs, ...).

:class:`HealthState` is the pure up/down policy; :class:`HealthChecker` runs one probing task
per tier and keeps a state for each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

import aiohttp

from tiergate.spec.fleet import HealthProbe

logger = logging.getLogger(__name__)


class HealthState:
    """Up/down from consecutive probe results, with hysteresis in both directions.

    A tier starts up: it is usable until probes say otherwise.
    """

    __slots__ = ("_failures", "_healthy_threshold", "_successes", "_unhealthy_threshold", "_up")

    def __init__(self, unhealthy_threshold: int, healthy_threshold: int) -> None:
        if unhealthy_threshold < 1 or healthy_threshold < 1:
            raise ValueError(
                f"thresholds must be at least 1, got unhealthy={unhealthy_threshold} "
                f"healthy={healthy_threshold}"
            )
        self._unhealthy_threshold = unhealthy_threshold
        self._healthy_threshold = healthy_threshold
        self._up = True
        self._failures = 0
        self._successes = 0

    @property
    def up(self) -> bool:
        """Whether the tier should receive requests."""
        return self._up

    def record(self, ok: bool) -> bool:
        """Record one probe result; return True when :attr:`up` changed."""
        if ok:
            self._failures = 0
            self._successes += 1
            if not self._up and self._successes >= self._healthy_threshold:
                self._up = True
                return True
        else:
            self._successes = 0
            self._failures += 1
            if self._up and self._failures >= self._unhealthy_threshold:
                self._up = False
                return True
        return False


class HealthChecker:
    """Probes each tier's health URL every ``interval_s`` and tracks whether it is up."""

    def __init__(
        self,
        probes: Mapping[str, HealthProbe],
        session: aiohttp.ClientSession,
        on_change: Callable[[str, bool], None] | None = None,
    ) -> None:
        self._probes = dict(probes)
        self._session = session
        self._on_change = on_change
        self._states = {
            tier: HealthState(p.unhealthy_threshold, p.healthy_threshold)
            for tier, p in self._probes.items()
        }
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start probing every tier: the first probe is sent at once."""
        if self._tasks:
            raise RuntimeError("health checker already started")
        self._tasks = [
            asyncio.create_task(self._run(tier), name=f"health-check:{tier}")
            for tier in self._probes
        ]

    async def stop(self) -> None:
        """Cancel the probing tasks and wait for them to finish."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            # wait() rather than gather(): it neither raises the tasks' CancelledError nor
            # swallows a cancellation of stop() itself.
            await asyncio.wait(tasks)

    def is_up(self, tier: str) -> bool:
        """Whether ``tier`` may receive requests; always True for a tier without a probe."""
        state = self._states.get(tier)
        return state is None or state.up

    async def probe_once(self, tier: str) -> bool:
        """Send one probe to ``tier``: True on HTTP 200 within the probe's timeout."""
        probe = self._probes[tier]
        timeout = aiohttp.ClientTimeout(total=probe.timeout_s)
        try:
            async with self._session.get(probe.url, timeout=timeout) as response:
                # Read the (small) body so the connection can be reused for the next probe.
                await response.read()
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            logger.debug("health probe of %s at %s failed: %r", tier, probe.url, exc)
            return False

    async def _run(self, tier: str) -> None:
        probe = self._probes[tier]
        state = self._states[tier]
        loop = asyncio.get_running_loop()
        while True:
            # Probes start interval_s apart, one at a time (back to back if one runs longer).
            next_at = loop.time() + probe.interval_s
            ok = await self.probe_once(tier)
            if state.record(ok):
                self._changed(tier, state.up)
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    def _changed(self, tier: str, up: bool) -> None:
        probe = self._probes[tier]
        if up:
            logger.warning("tier %s is up again: health check %s passes", tier, probe.url)
        else:
            logger.warning("tier %s is down: health check %s fails", tier, probe.url)
        if self._on_change is None:
            return
        try:
            self._on_change(tier, up)
        except Exception:
            # A faulty listener must not stop the health checks of this tier.
            logger.exception("health change listener failed for tier %s", tier)
