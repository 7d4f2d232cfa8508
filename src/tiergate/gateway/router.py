"""The runtime of one fleet: providers, breakers, health checks and load signals per tier.

A reload builds a new router and swaps it in; requests already running keep the router they
started with, and the old one is closed once they are done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import aiohttp

from tiergate.gateway.breaker import BreakerState
from tiergate.gateway.cascade import Skip, entry_points
from tiergate.gateway.gates import TierGates
from tiergate.gateway.governance import create_gate
from tiergate.gateway.health import HealthChecker
from tiergate.gateway.saturation import SaturationMonitor
from tiergate.providers import Endpoint, Provider, ProviderSetupError, Usage, create_provider
from tiergate.spec import Fleet
from tiergate.telemetry.metrics import BREAKER_STATE_VALUES, GatewayMetrics
from tiergate.telemetry.tracing import TracingSettings, create_tracing

log = logging.getLogger(__name__)


class Router:
    """Everything the request path needs to know about the tiers of one fleet."""

    def __init__(
        self,
        fleet: Fleet,
        metrics: GatewayMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fleet = fleet
        self.clock = clock
        self.tiers = {tier.name: tier for tier in fleet.tiers}
        self.entries = entry_points(fleet)
        self.public_names = [tier.name for tier in fleet.tiers]
        self._metrics = metrics
        self.providers: dict[str, Provider] = {}
        for tier in fleet.tiers:
            try:
                self.providers[tier.name] = create_provider(tier)
            except ProviderSetupError as exc:
                log.error("%s; the tier is skipped", exc)
        # The cascade's per-tier state, pure and shared with the simulator; the monitors below
        # only feed it their verdicts.
        self.gates = TierGates(fleet, on_breaker=self._show_breaker)
        self._probe_session: aiohttp.ClientSession | None = None
        self._health: HealthChecker | None = None
        self._saturation: SaturationMonitor | None = None
        self.governance = create_gate(fleet, metrics.governance)
        settings = _tracing_settings(fleet)
        self.tracing = create_tracing(settings)
        self.tracing_enabled = settings is not None
        self.stage_header = (
            fleet.governance.stage_header if fleet.governance else "x-tiergate-stage"
        )
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        """Open the ledger (if any), then start health checks and load scrapes."""
        if self.governance is not None:
            await self.governance.start()
        self._probe_session = aiohttp.ClientSession()
        probes = {t.name: t.health for t in self.fleet.tiers if t.health is not None}
        limits = {t.name: t.spillover for t in self.fleet.tiers if t.spillover is not None}
        for name in self.tiers:
            self._metrics.tier_up.labels(name).set(1)
            self._metrics.saturated.labels(name).set(0)
            if self.gates.has_breakers:
                self._metrics.breaker_state.labels(name).set(0)
        self._health = HealthChecker(probes, self._probe_session, on_change=self._health_changed)
        self._saturation = SaturationMonitor(
            limits, self._probe_session, clock=self.clock, on_change=self._saturation_changed
        )
        await self._health.start()
        await self._saturation.start()

    async def close(self) -> None:
        """Stop background work and release every connection pool."""
        if self._health is not None:
            await self._health.stop()
        if self._saturation is not None:
            await self._saturation.stop()
        for provider in self.providers.values():
            await provider.close()
        if self.governance is not None:
            await self.governance.close()
        await self.tracing.aclose()
        if self._probe_session is not None:
            await self._probe_session.close()

    async def retire(self, deadline_s: float) -> None:
        """Close once the requests that started on this router are done (or at the deadline)."""
        try:
            await asyncio.wait_for(self._idle.wait(), deadline_s)
        except TimeoutError:
            log.warning("closing the previous fleet with %d requests still running", self.in_flight)
        await self.close()

    def enter(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    def skip(self, name: str, endpoint: Endpoint, now: float) -> Skip | None:
        """Why tier ``name`` is not to be attempted now (acquiring a breaker probe if due)."""
        if (absent := self._absent(name, endpoint)) is not None:
            return absent
        return self.gates.skip(name, now)

    def may_attempt(self, name: str, endpoint: Endpoint, now: float) -> bool:
        """Whether tier ``name`` could be attempted now, judged without taking a breaker probe
        (saturation does not count: a saturated tier is still a last resort)."""
        return self._absent(name, endpoint) is None and self.gates.may_attempt(name, now)

    def absent_for(self, endpoint: Endpoint) -> Callable[[str], Skip | None]:
        """Whether a tier has no provider, or one without ``endpoint``: a cascade walk's
        ``absent``."""
        return lambda name: self._absent(name, endpoint)

    def _absent(self, name: str, endpoint: Endpoint) -> Skip | None:
        """Whether tier ``name`` has no provider, or one without ``endpoint``."""
        provider = self.providers.get(name)
        if provider is None:
            return Skip.UNAVAILABLE
        return None if provider.supports(endpoint) else Skip.UNSUPPORTED

    def record(self, name: str, now: float, ok: bool) -> None:
        """Feed an attempt's outcome to the tier's breaker."""
        self.gates.record(name, now, ok)

    def release(self, name: str, now: float) -> None:
        """An acquired attempt was abandoned without an outcome (client went away)."""
        self.gates.release(name, now)

    def usable(self) -> dict[str, bool]:
        """Per tier: could a request be attempted there now (without consuming a probe)."""
        usable = self.gates.usable(self.clock())
        return {name: name in self.providers and ok for name, ok in usable.items()}

    def cost(self, tier: str | None, usage: Usage | None) -> float:
        """What ``usage`` cost on ``tier`` at its prices (0 when nothing was served)."""
        if tier is None or usage is None or tier not in self.tiers:
            return 0.0
        return self.tiers[tier].price.cost(usage)

    def _show_breaker(self, name: str, state: BreakerState) -> None:
        self._metrics.breaker_state.labels(name).set(BREAKER_STATE_VALUES[state.value])

    def _health_changed(self, name: str, up: bool) -> None:
        self.gates.set_up(name, up)
        self._metrics.tier_up.labels(name).set(1 if up else 0)

    def _saturation_changed(self, name: str, saturated: bool) -> None:
        self.gates.set_saturated(name, saturated)
        log.info("tier %s %s", name, "saturated: spilling over" if saturated else "has room again")
        self._metrics.saturated.labels(name).set(1 if saturated else 0)


def _tracing_settings(fleet: Fleet) -> TracingSettings | None:
    """The fleet's ``tracing`` section as the tracer's settings."""
    spec = fleet.tracing
    if spec is None:
        return None
    langfuse = spec.langfuse
    return TracingSettings(
        otlp_endpoint=spec.otlp_endpoint,
        headers=spec.headers,
        service_name=spec.service_name,
        langfuse_host=langfuse.host if langfuse else None,
        public_key=langfuse.public_key if langfuse else None,
        secret_key=langfuse.secret_key if langfuse else None,
    )
