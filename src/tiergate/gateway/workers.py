"""``tiergate serve --workers N``: a supervisor of single-worker processes sharing a port.

The workers bind with SO_REUSEPORT and share one metrics directory. The supervisor forwards
SIGHUP and SIGTERM, starts again a worker that dies (unless workers keep dying), and refuses a
fleet whose budgets and rate limits each worker would count on its own.
"""

from __future__ import annotations

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

from tiergate.spec import Fleet
from tiergate.telemetry.metrics import MULTIPROCESS_ENV

log = logging.getLogger("tiergate.serve")


def per_process_limits(fleet: Fleet, workers: int) -> str | None:
    """Why ``fleet`` cannot be served by ``workers`` processes, or None when it can.

    Without ``governance.redis``, budgets and rate limits are counted in each process: N
    workers would each admit the whole of every limit, N times what it says. Keys can be given
    a budget or limits at any time (``keys create``), so any fleet with keys counts, unless
    keys are ``off`` and no budget or rate limit is set in the spec."""
    settings = fleet.governance
    if workers <= 1 or settings is None or settings.redis is not None:
        return None
    if settings.keys == "off" and not settings.budgets and not settings.rate_limits:
        return None
    return (
        f"cannot start {workers} workers: budgets and rate limits without governance.redis "
        f"are counted in each process, so every worker would allow the whole of each; set "
        f"governance.redis (redis://HOST:PORT/DB) to share them, or serve with --workers 1"
    )


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


def supervise(path: Path, host: str, port: int, workers: int, log_level: str) -> int:
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
