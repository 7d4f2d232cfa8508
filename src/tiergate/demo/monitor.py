"""The live view's loop: scrape the gateway and the engines, note state changes, draw.

On a terminal the view is a rich ``Live`` table redrawn every ``every_s``; elsewhere (a pipe,
a log, a test) it prints a block of plain lines every few seconds and each event as it occurs.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence

import aiohttp
from rich.console import Console
from rich.live import Live

from tiergate.demo.metrics import GatewaySample, mean, parse_gateway
from tiergate.demo.replay import Replay
from tiergate.demo.view import (
    EngineLoad,
    Event,
    Frame,
    TierInfo,
    build_frame,
    plain_lines,
    render,
    tier_state,
    trace_clock,
)
from tiergate.telemetry.vllm_page import parse_vllm_load

# Rates and p95 are computed over this many wall seconds of scrapes: long enough to hold
# a few requests per tier, short enough to show the fault within a second or two.
WINDOW_S = 2.0
PLAIN_EVERY_S = 5.0
# Gateway tier states worth an event line, and how to say them.
_STATE_EVENTS = {
    "down": "marked down by health checks",
    "breaker open": "breaker open: error rate over the limit, skipped",
    "half-open": "breaker half-open: one probe request let through",
}


class Monitor:
    """Scrapes ``gateway_url``'s ``/metrics`` and each tier's engines (``engines``: tier name
    -> replica origins), appends tier state changes to ``events``, and shows frames."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        gateway_url: str,
        tiers: Sequence[TierInfo],
        *,
        engines: Mapping[str, Sequence[str]],
        replay: Replay,
        events: list[Event],
        speedup: float,
        trace_total_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._gateway = gateway_url
        self._tiers = tuple(tiers)
        self._engines = engines
        self._replay = replay
        self._events = events
        self._speedup = speedup
        self._trace_total_s = trace_total_s
        self._clock = clock
        self._samples: deque[GatewaySample] = deque()
        self._states: dict[str, str] = {}

    async def run(self, console: Console, *, live: bool, every_s: float) -> None:
        """Until cancelled."""
        if live:
            with Live(console=console, auto_refresh=False, transient=False) as view:
                while True:
                    frame = await self.frame()
                    if frame is not None:
                        view.update(render(frame), refresh=True)
                    await asyncio.sleep(every_s)
        printed_events = len(self._events)
        last_print = self._clock()
        while True:
            frame = await self.frame()
            for event in self._events[printed_events:]:
                text = f"{trace_clock(event.wall_s * self._speedup)}  {event.text}"
                console.print(text, markup=False, highlight=False, soft_wrap=True)
            printed_events = len(self._events)
            if frame is not None and self._clock() - last_print >= PLAIN_EVERY_S:
                last_print = self._clock()
                for line in plain_lines(frame):
                    console.print(line, markup=False, highlight=False, soft_wrap=True)
            await asyncio.sleep(every_s)

    async def frame(self) -> Frame | None:
        """Scrape once and build the frame; None until a scrape succeeded."""
        sample = await self._scrape_gateway()
        if sample is None:
            return None
        self._samples.append(sample)
        while len(self._samples) > 2 and sample.at - self._samples[1].at >= WINDOW_S:
            self._samples.popleft()
        self._note_changes(sample)
        loads = dict(
            zip(
                (tier.name for tier in self._tiers),
                await asyncio.gather(*(self._load(tier.name) for tier in self._tiers)),
                strict=True,
            )
        )
        return build_frame(
            self._tiers,
            sample,
            self._samples[0],
            loads,
            progress=self._replay.progress,
            outcomes=self._replay.outcomes,
            events=self._events,
            wall_s=self._replay.elapsed(),
            speedup=self._speedup,
            trace_total_s=self._trace_total_s,
        )

    def _note_changes(self, sample: GatewaySample) -> None:
        for tier in self._tiers:
            state = tier_state(sample, tier.name)
            if state == "saturated":
                state = "up"  # spillover comes and goes with the load: not an event
            before = self._states.get(tier.name, "up")
            self._states[tier.name] = state
            if state == before:
                continue
            if state in _STATE_EVENTS:
                text = _STATE_EVENTS[state]
            elif before in ("down", "breaker open", "half-open"):
                text = "back in the cascade" + (" (breaker closed)" if before != "down" else "")
            else:
                continue
            self._events.append(Event(self._replay.elapsed(), f"{tier.name}: {text}"))

    async def _scrape_gateway(self) -> GatewaySample | None:
        try:
            async with self._session.get(f"{self._gateway}/metrics") as response:
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError):
            return None  # a missed frame; the next scrape catches up
        return parse_gateway(text, self._clock())

    async def _load(self, tier: str) -> EngineLoad:
        pages = await asyncio.gather(*(self._page(o) for o in self._engines.get(tier, ())))
        loads = [parse_vllm_load(page) for page in pages if page is not None]
        waiting = [w for w, _ in loads if w is not None]
        return EngineLoad(
            kv_usage=mean(kv for _, kv in loads),
            waiting=sum(waiting) if waiting else None,
        )

    async def _page(self, origin: str) -> str | None:
        try:
            async with self._session.get(f"{origin}/metrics") as response:
                return await response.text() if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError):
            return None  # a replica that is down has no load to show
