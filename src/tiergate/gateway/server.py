"""Running the gateway: uvloop, signals (SIGHUP reload, SIGTERM drain) and worker processes."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from tiergate.errors import SpecError, StoreUnavailableError
from tiergate.gateway.app import create_app, reload
from tiergate.gateway.governance import per_process_limits
from tiergate.gateway.protocol import GatewayRunner
from tiergate.spec import Fleet, load_fleet
from tiergate.telemetry.metrics import MULTIPROCESS_ENV

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
        return _supervise(path, host, port, workers, log_level)
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


POLL_S = 0.1  # how often the supervisor looks for workers that died


@dataclass(slots=True)
class RestartBudget:
    """Whether a worker that died may be started again: yes, unless workers died more than
    ``limit`` times within ``window_s``; then every start fails (the port, the spec, a store)
    and restarting would only spin."""

    limit: int = 3
    window_s: float = 60.0
    deaths: deque[float] = field(default_factory=deque)

    def allows(self, now: float) -> bool:
        """Count a death at ``now`` (monotonic seconds); whether a restart may follow."""
        self.deaths.append(now)
        while self.deaths and self.deaths[0] <= now - self.window_s:
            self.deaths.popleft()
        return len(self.deaths) <= self.limit


def _supervise(path: Path, host: str, port: int, workers: int, log_level: str) -> int:
    """Run ``workers`` single-worker processes sharing the port (SO_REUSEPORT) at
    ``log_level``; start again one that dies; forward SIGHUP and SIGTERM to them; exit when
    they have all exited after SIGTERM (or SIGINT), or with 1 when they keep dying.

    The workers share one metrics directory, so that each one's ``/metrics`` reports them all.
    """
    if port != 0:
        # Workers bind with SO_REUSEPORT, which another such server on the port does not stop:
        # a plain bind first, so that a taken port fails here, once, instead of in every worker.
        socket.create_server((host, port)).close()
    command = [sys.executable, "-m", "tiergate", "serve", "-c", str(path), "--host", host]
    command += ["--port", str(port), "--workers", "1", "--log-level", log_level]
    with tempfile.TemporaryDirectory(prefix="tiergate-metrics-") as metrics_dir:
        env = {**os.environ, "TIERGATE_REUSE_PORT": "1", MULTIPROCESS_ENV: metrics_dir}
        children = [subprocess.Popen(command, env=env) for _ in range(workers)]
        stopping = False

        def forward(signum: int, _frame: object) -> None:
            nonlocal stopping
            stopping = stopping or signum != signal.SIGHUP
            for child in children:
                if child.poll() is None:
                    child.send_signal(signum)

        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, forward)
        budget = RestartBudget()
        while not (stopping and all(child.poll() is not None for child in children)):
            time.sleep(POLL_S)
            for index, child in enumerate(children):
                status = child.poll()
                if status is None or stopping:
                    continue
                _forget_worker(child.pid, metrics_dir)
                if not budget.allows(time.monotonic()):
                    log.error(
                        "worker %d %s; %d workers died within %.0f s: giving up",
                        child.pid,
                        _how_it_ended(status),
                        len(budget.deaths),
                        budget.window_s,
                    )
                    forward(signal.SIGTERM, None)
                    for other in children:
                        other.wait()
                    return 1
                children[index] = subprocess.Popen(command, env=env)
                log.warning(
                    "worker %d %s; started worker %d in its place",
                    child.pid,
                    _how_it_ended(status),
                    children[index].pid,
                )
                if stopping:  # SIGTERM came while it started
                    children[index].send_signal(signal.SIGTERM)
        statuses = [child.wait() for child in children]
    return max(statuses, default=0)


def _how_it_ended(status: int) -> str:
    """A worker's exit status in words: a negative status is the signal that killed it."""
    if status < 0:
        return f"was killed by {signal.Signals(-status).name}"
    return f"exited with status {status}"


def _forget_worker(pid: int, metrics_dir: str) -> None:
    """Drop a dead worker's live gauges (requests in flight) from the shared metrics."""
    from prometheus_client import multiprocess  # noqa: PLC0415 - only with --workers

    multiprocess.mark_process_dead(pid, metrics_dir)  # type: ignore[no-untyped-call]
