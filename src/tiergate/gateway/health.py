"""Active health checks of the tiers that set ``healthCheck`` (endpoint, intervalMs, ...).

:class:`HealthState` is the pure up/down policy; :class:`HealthChecker` runs one probing task
per tier and keeps a state for each.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import aiohttp

from tiergate.gateway.periodic import Periodic, notify
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
        self._loops = Periodic("health-check")

    async def start(self) -> None:
        """Start probing every tier: the first probe is sent at once."""
        self._loops.start({tier: (p.interval_s, self._step) for tier, p in self._probes.items()})

    async def stop(self) -> None:
        """Cancel the probing tasks and wait for them to finish."""
        await self._loops.stop()

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

    async def _step(self, tier: str) -> None:
        state = self._states[tier]
        if state.record(await self.probe_once(tier)):
            self._changed(tier, state.up)

    def _changed(self, tier: str, up: bool) -> None:
        probe = self._probes[tier]
        if up:
            logger.warning("tier %s is up again: health check %s passes", tier, probe.url)
        else:
            logger.warning("tier %s is down: health check %s fails", tier, probe.url)
        notify(self._on_change, tier, up)
