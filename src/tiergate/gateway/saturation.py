"""Load-aware spillover: whether a tier's vLLM engines are saturated, from their ``/metrics``.

:func:`~tiergate.telemetry.vllm_page.parse_vllm_load` reads the two gauges that matter out of
the engines' Prometheus text, :func:`is_saturated` is the pure policy, and
:class:`SaturationMonitor` scrapes each tier's engines and caches the verdict so the request path
only does a dictionary lookup.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import aiohttp

from tiergate.gateway.periodic import Periodic, notify
from tiergate.spec.fleet import SpilloverLimits
from tiergate.telemetry.vllm_page import parse_vllm_load

logger = logging.getLogger(__name__)

_MAX_SCRAPE_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class EngineSample:
    """One scrape of one engine endpoint: queue length and KV-cache use (0-1), at ``at``."""

    waiting: float | None
    kv_usage: float | None
    at: float


def is_saturated(samples: Sequence[EngineSample], limits: SpilloverLimits, now: float) -> bool:
    """Whether a tier whose engines reported ``samples`` should spill new requests over.

    Samples older than ``limits.stale_after_s`` are ignored, and missing data never counts as
    saturation: dead engines are the passive failure signals' business.
    """
    oldest = now - limits.stale_after_s
    fresh = [s for s in samples if s.at >= oldest]
    if limits.max_waiting is not None:
        waiting = _mean(s.waiting for s in fresh)
        if waiting is not None and waiting >= limits.max_waiting:
            return True
    if limits.max_kv_cache_usage is not None:
        kv_usage = _mean(s.kv_usage for s in fresh)
        if kv_usage is not None and kv_usage >= limits.max_kv_cache_usage:
            return True
    return False


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


class SaturationMonitor:
    """Scrapes each tier's engines every ``scrape_interval_s``; caches whether it is saturated."""

    def __init__(
        self,
        tiers: Mapping[str, SpilloverLimits],
        session: aiohttp.ClientSession,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, bool], None] | None = None,
    ) -> None:
        self._tiers = dict(tiers)
        self._session = session
        self._clock = clock
        self._on_change = on_change
        # Latest successful sample per tier and engine URL; a failed scrape keeps the old one,
        # which then goes stale.
        self._samples: dict[str, dict[str, EngineSample]] = {tier: {} for tier in self._tiers}
        self._saturated = dict.fromkeys(self._tiers, False)
        self._loops = Periodic("saturation")

    async def start(self) -> None:
        """Start scraping every tier: the first round is sent at once."""
        self._loops.start(
            {
                tier: (limits.scrape_interval_s, self.scrape_round)
                for tier, limits in self._tiers.items()
            }
        )

    async def stop(self) -> None:
        """Cancel the scraping tasks and wait for them to finish."""
        await self._loops.stop()

    def saturated(self, tier: str) -> bool:
        """Whether ``tier`` is saturated as of the last scrape round; False without limits."""
        return self._saturated.get(tier, False)

    async def scrape_round(self, tier: str) -> bool:
        """Scrape all engines of ``tier`` once, concurrently; return the new verdict."""
        limits = self._tiers[tier]
        limit = aiohttp.ClientTimeout(total=min(limits.scrape_interval_s, _MAX_SCRAPE_TIMEOUT_S))
        samples = self._samples[tier]
        results = await asyncio.gather(*(self._scrape(url, limit) for url in limits.metrics_urls))
        for url, sample in zip(limits.metrics_urls, results, strict=True):
            if sample is not None:
                samples[url] = sample
        saturated = is_saturated(list(samples.values()), limits, self._clock())
        if saturated != self._saturated[tier]:
            self._saturated[tier] = saturated
            self._changed(tier, saturated)
        return saturated

    async def _scrape(self, url: str, limit: aiohttp.ClientTimeout) -> EngineSample | None:
        try:
            async with self._session.get(url, timeout=limit) as response:
                if response.status != 200:
                    logger.debug("metrics scrape of %s: HTTP %d", url, response.status)
                    return None
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            logger.debug("metrics scrape of %s failed: %r", url, exc)
            return None
        waiting, kv_usage = parse_vllm_load(body.decode("utf-8", errors="replace"))
        return EngineSample(waiting=waiting, kv_usage=kv_usage, at=self._clock())

    def _changed(self, tier: str, saturated: bool) -> None:
        # DEBUG only: spilling over is normal operation, and on_change's owner (the router)
        # reports it; logging here too would print every flip twice.
        logger.debug("tier %s saturated: %s", tier, saturated)
        notify(self._on_change, tier, saturated)
