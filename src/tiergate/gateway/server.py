"""Running the gateway: uvloop, signals (SIGHUP reload, SIGTERM drain) and worker processes."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path

from aiohttp import web

from tiergate.errors import SpecError, StoreUnavailableError
from tiergate.gateway.app import create_app, reload
from tiergate.gateway.protocol import GatewayRunner
from tiergate.gateway.workers import per_process_limits, supervise
from tiergate.spec import Fleet, load_fleet

log = logging.getLogger("tiergate.serve")


async def start_site(
    app: web.Application, host: str, port: int, *, drain_s: float, reuse_port: bool = False
) -> web.AppRunner:
    """Start serving ``app``; the runner's cleanup stops accepting and drains for ``drain_s``."""
    # handler_cancellation: a client that goes away cancels its handler, and with it the
    # upstream request, at once rather than at the next write.
    # GatewayRunner: requests aiohttp refuses itself get OpenAI's error JSON, not text.
    runner = GatewayRunner(
        app, handler_cancellation=True, access_log=None, shutdown_timeout=drain_s
    )
    await runner.setup()
    # A deep accept backlog: bursts of new connections wait in it instead of being dropped
    # (a dropped SYN costs the client a retransmit, a second or more).
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port, backlog=4096)
    try:
        await site.start()
    except OSError:  # a port in use: close what the app opened (client sessions) first
        await runner.cleanup()
        raise
    return runner


async def serve(fleet: Fleet, path: Path, host: str, port: int, *, reuse_port: bool) -> None:
    """Serve until SIGTERM or SIGINT; SIGHUP reloads ``path``."""
    started = time.perf_counter()
    app = create_app(fleet)
    runner = await start_site(
        app, host, port, drain_s=fleet.gateway.drain_timeout_s, reuse_port=reuse_port
    )
    bound = ", ".join(f"http://{a[0]}:{a[1]}" for a in runner.addresses)
    log.info(
        "serving %d tiers on %s (ready in %.3f s)",
        len(fleet.tiers),
        bound,
        time.perf_counter() - started,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reloads: set[asyncio.Task[None]] = set()

    def on_hup() -> None:
        task = loop.create_task(_reload(app, path))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    log.info(
        "stopping: no new connections, draining requests for up to %.0f s",
        fleet.gateway.drain_timeout_s,
    )
    await runner.cleanup()
    log.info("stopped")


async def _reload(app: web.Application, path: Path) -> None:
    try:
        fleet = await asyncio.to_thread(load_fleet, path)
    except SpecError as exc:
        log.error("reload rejected, still serving the previous fleet:\n%s", exc)
        return
    try:
        await reload(app, fleet)
    except StoreUnavailableError as exc:
        log.error("reload rejected, still serving the previous fleet: %s", exc)


def run(path: Path, host: str, port: int, workers: int, *, log_level: str = "info") -> int:
    """Blocking entry point of ``tiergate serve``; returns the exit status.

    Raises ``SpecError`` for an invalid fleet and ``OSError`` when the port cannot be bound.
    """
    fleet = load_fleet(path)
    if (refusal := per_process_limits(fleet, workers)) is not None:
        log.error("%s", refusal)
        return 2
    if workers > 1:
        return supervise(path, host, port, workers, log_level)
    reuse_port = os.environ.get("TIERGATE_REUSE_PORT") == "1"
    runner = _event_loop_runner()
    try:
        with runner:
            runner.run(serve(fleet, path, host, port, reuse_port=reuse_port))
    except StoreUnavailableError as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0


def _event_loop_runner() -> asyncio.Runner:
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up, absent on some platforms
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)
