"""The demo's orchestration: emulated tiers, the gateway, the replay, the fault, the view.

Everything runs in this process, on one event loop, on 127.0.0.1: three emulated vLLM tiers,
the gateway serving the demo fleet, the open-loop replay of a trace through the gateway, a
scenario that breaks the on-prem tier part-way and heals it later, and the live view. Every
resource is released in ``finally`` blocks, so an interrupted demo leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from rich.console import Console

from tiergate.demo.metrics import GatewaySample, parse_gateway
from tiergate.demo.monitor import Monitor
from tiergate.demo.prompts import PromptMaker
from tiergate.demo.replay import Replay
from tiergate.demo.report import Summary, render_summary, summarize
from tiergate.demo.tiers import DEMO_TIERS, EmulatedTiers, TierPlan, heal, inject
from tiergate.demo.view import Event, TierInfo
from tiergate.errors import TiergateError
from tiergate.gateway.app import create_app
from tiergate.gateway.server import start_site
from tiergate.sim.workloads import TraceRequest, read_trace, slice_trace, speed_up
from tiergate.spec import Fleet, load_fleet

# What the on-prem tier's replicas do while "broken": fail every request as an overloaded or
# failing engine does. Its /health stays 200, so the errorRate breaker has to notice.
BREAK_FAULTS: dict[str, object] = {"error_rate": 1.0, "error_status": 503}


class DemoError(TiergateError):
    """The demo cannot run as asked (a fleet that does not fit, an empty trace slice)."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What to replay and how.

    ``duration_s`` is trace time; the replay takes ``duration_s / speedup`` wall seconds. The
    on-prem tier breaks when a share ``break_at`` of the requests has been sent and heals at
    ``heal_at``: shares of requests rather than of time, because real traces have long lulls,
    and a fault during one would show nothing.
    """

    trace: Path
    fleet: Path
    duration_s: float
    speedup: float
    seed: int = 0
    start_s: float = 0.0
    break_at: float = 0.3
    heal_at: float = 0.6
    max_in_flight: int = 256
    max_output_tokens: int = 1024
    refresh_s: float = 0.25


async def run_demo(
    options: DemoOptions,
    console: Console,
    stop: asyncio.Event,
    *,
    live: bool,
    clock: Callable[[], float] = time.monotonic,
) -> Summary:
    """Run the demo until the replay ends or ``stop`` is set; the summary of what happened."""
    requests = _load_trace(options)
    fleet = load_fleet(options.fleet)
    if len(fleet.cascade) != len(DEMO_TIERS):
        raise DemoError(
            f"{options.fleet}: the demo emulates {len(DEMO_TIERS)} tiers (on-prem, cloud, "
            f"managed API); this fleet's cascade has {len(fleet.cascade)}"
        )
    models = {tier.model for tier in fleet.cascade}
    if len(models) != 1:
        raise DemoError(f"{options.fleet}: the demo's tiers must serve one model, got {models}")
    model = models.pop()
    try:
        emulated = EmulatedTiers(DEMO_TIERS, model=model, speed=options.speedup, seed=options.seed)
    except KeyError as exc:  # the performance model's catalog does not know the model
        raise DemoError(f"{options.fleet}: cannot emulate {model}: {exc.args[0]}") from exc
    events: list[Event] = []
    try:
        await emulated.start()
        fleet = load_fleet(options.fleet, env={**os.environ, **emulated.env()})
        _check_urls(options.fleet, fleet, emulated)
        tiers = [
            TierInfo(tier.name, plan.role, tier.price_per_1k_tokens)
            for tier, plan in zip(fleet.cascade, DEMO_TIERS, strict=True)
        ]
        async with _gateway(fleet) as gateway_url, _sessions(options.max_in_flight) as sessions:
            client, admin = sessions
            console.print(
                f"gateway {gateway_url}/v1 (model {fleet.default_model}); "
                + "; ".join(f"{plan.role} {url}" for plan, url in _urls(emulated)),
                soft_wrap=True,
            )
            prompts = PromptMaker(options.seed, _max_prompt_tokens(emulated, options))
            replay = Replay(
                client,
                gateway_url + "/v1",
                fleet.default_model,
                requests,
                prompts,
                max_in_flight=options.max_in_flight,
                max_output_tokens=options.max_output_tokens,
                clock=clock,
            )
            monitor = Monitor(
                admin,
                gateway_url,
                tiers,
                engines={info.name: emulated.origins(info.role) for info in tiers},
                replay=replay,
                events=events,
                speedup=options.speedup,
                trace_total_s=options.duration_s,
                clock=clock,
            )
            scenario = asyncio.create_task(
                _scenario(
                    admin,
                    emulated.origins(tiers[0].role),
                    tiers[0],
                    events=events,
                    replay=replay,
                    break_after=math.ceil(options.break_at * len(requests)),
                    heal_after=math.ceil(options.heal_at * len(requests)),
                )
            )
            watching = asyncio.create_task(
                monitor.run(console, live=live, every_s=options.refresh_s)
            )
            try:
                await replay.run(stop)
            finally:
                for task in (scenario, watching):
                    task.cancel()
                await asyncio.gather(scenario, watching, return_exceptions=True)
            final = await _final_sample(admin, gateway_url, clock)
            if stop.is_set():
                events.append(Event(replay.elapsed(), "interrupted: replay stopped early"))
            return summarize(
                tiers,
                final,
                replay.outcomes,
                events,
                sent=replay.progress.sent,
                total=replay.progress.total,
                wall_s=replay.elapsed(),
                speedup=options.speedup,
            )
    finally:
        await emulated.close()


def _load_trace(options: DemoOptions) -> list[TraceRequest]:
    window = slice_trace(
        read_trace(options.trace), start_s=options.start_s, duration_s=options.duration_s
    )
    requests = list(speed_up(window, options.speedup))
    if not requests:
        raise DemoError(
            f"{options.trace}: no request arrives in the {options.duration_s:g} s from "
            f"{options.start_s:g} s"
        )
    return requests


def _urls(emulated: EmulatedTiers) -> list[tuple[TierPlan, str]]:
    env = emulated.env()
    return [(plan, env[plan.env]) for plan in emulated.plans]


def _check_urls(path: Path, fleet: Fleet, emulated: EmulatedTiers) -> None:
    for tier, plan in zip(fleet.cascade, emulated.plans, strict=True):
        expected = emulated.env()[plan.env]
        if tier.base_url != expected:
            raise DemoError(
                f"{path}: tier {tier.name} must take its baseUrl from ${{{plan.env}}}, where "
                f"the demo puts its emulated {plan.role} tier; it is {tier.base_url}"
            )


def _max_prompt_tokens(emulated: EmulatedTiers, options: DemoOptions) -> int:
    # Longer prompts would be refused with a 400 by every tier (context length), which is the
    # client's error, not a fallback: cap them instead.
    return max(1, emulated.max_model_len() - options.max_output_tokens)


async def _scenario(
    admin: aiohttp.ClientSession,
    origins: list[str],
    onprem: TierInfo,
    *,
    events: list[Event],
    replay: Replay,
    break_after: int,
    heal_after: int,
) -> None:
    """Break the on-prem tier (replicas at ``origins``) once ``break_after`` requests were
    sent, and heal it after ``heal_after``."""
    await replay.wait_sent(break_after)
    await inject(admin, origins, BREAK_FAULTS)
    events.append(Event(replay.elapsed(), f"{onprem.name} broken: every request answers 503"))
    await replay.wait_sent(heal_after)
    await heal(admin, origins)
    events.append(Event(replay.elapsed(), f"{onprem.name} healed"))


async def _final_sample(
    admin: aiohttp.ClientSession, gateway_url: str, clock: Callable[[], float]
) -> GatewaySample:
    async with admin.get(f"{gateway_url}/metrics") as response:
        return parse_gateway(await response.text(), clock())


@contextlib.asynccontextmanager
async def _gateway(fleet: Fleet) -> AsyncIterator[str]:
    """The gateway serving ``fleet`` on a free loopback port; yields its origin."""
    runner: web.AppRunner | None = None
    try:
        runner = await start_site(create_app(fleet), "127.0.0.1", 0, drain_s=1.0)
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        if runner is not None:
            await runner.cleanup()


@contextlib.asynccontextmanager
async def _sessions(
    max_in_flight: int,
) -> AsyncIterator[tuple[aiohttp.ClientSession, aiohttp.ClientSession]]:
    """The replay's client (one connection per request in flight) and a small one for
    scrapes and admin calls, so that those never queue behind the load."""
    client = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_in_flight),
        timeout=aiohttp.ClientTimeout(total=300, sock_connect=10),
    )
    admin = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=16),
        timeout=aiohttp.ClientTimeout(total=10),
    )
    try:
        yield client, admin
    finally:
        await client.close()
        await admin.close()


def main(
    *,
    trace: Path,
    fleet: Path,
    duration_s: float,
    speedup: float,
    seed: int,
    start_s: float,
    console: Console,
    live: bool,
    show: Callable[[Summary], None] | None = None,
) -> int:
    """Blocking entry point of ``tiergate demo``: 0 when done, 130 when stopped by SIGINT.

    The summary goes to ``show`` (by default: as tables on ``console``).
    """
    options = DemoOptions(trace, fleet, duration_s, speedup, seed, start_s)
    with _event_loop_runner() as runner:
        summary, interrupted = runner.run(_main(options, console, live))
    if show is None:
        console.print(render_summary(summary))
    else:
        show(summary)
    return 130 if interrupted else 0


async def _main(options: DemoOptions, console: Console, live: bool) -> tuple[Summary, bool]:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_interrupt() -> None:
        stop.set()
        # A second Ctrl-C gets Python's default: stop at once.
        loop.remove_signal_handler(signal.SIGINT)

    loop.add_signal_handler(signal.SIGINT, on_interrupt)
    try:
        summary = await run_demo(options, console, stop, live=live)
    finally:
        with contextlib.suppress(RuntimeError):  # the loop may be closing already
            loop.remove_signal_handler(signal.SIGINT)
    return summary, stop.is_set()


def _event_loop_runner() -> asyncio.Runner:
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up, absent on some platforms
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)
