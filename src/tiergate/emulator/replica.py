"""One emulated vLLM replica: an engine behind an HTTP server, with its faults and life cycle.

A replica starts (optionally cold: not ready for the model's load time), serves, and can be
crashed: it closes its listening socket and every connection at once, as a killed process
would, and with ``restart_after_s`` comes back on the same port with a fresh engine (metrics
from zero, cold start included), as a restarted pod would.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from tiergate.emulator.config import EmulatorConfig
from tiergate.emulator.engine import Engine
from tiergate.emulator.faults import Faults
from tiergate.emulator.metrics import VllmMetrics
from tiergate.emulator.scheduler import Scheduler
from tiergate.perf import PerfModel

log = logging.getLogger(__name__)


class Replica:
    """One replica on ``host:port`` (port 0: a free one, kept across restarts)."""

    def __init__(
        self,
        config: EmulatorConfig,
        index: int = 0,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        perf: PerfModel | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.index = index
        self.host = host
        self.port = port
        self.perf = perf or config.perf_model()
        self.kv_blocks = config.kv_blocks(self.perf)
        self.max_model_len = config.model_len(self.kv_blocks)
        self.faults: Faults = config.faults
        self.rng = random.Random(config.seed + index)
        self.clock = clock
        self.restarts = 0
        self._ready_at: float | None = None  # None: down (not started, or crashed)
        self._engine: Engine | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- what handlers read ------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The served model name."""
        return self.config.name

    @property
    def origin(self) -> str:
        """``http://HOST:PORT``: where ``/health``, ``/metrics`` and ``/admin`` live."""
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The OpenAI API root, ``http://HOST:PORT/v1``."""
        return f"{self.origin}/v1"

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError(f"replica {self.index} is not running")
        return self._engine

    @property
    def ready(self) -> bool:
        """Up and past its cold start."""
        return self._ready_at is not None and self.clock() >= self._ready_at

    @property
    def up(self) -> bool:
        """Listening (it may still be loading)."""
        return self._runner is not None

    def output_length(
        self, max_tokens: int, ignore_eos: bool | None, requested: int | None
    ) -> tuple[int, str]:
        """How many tokens a request generates, and why it stops (``length`` or ``stop``)."""
        if requested is not None and requested < max_tokens:
            return max(1, requested), "stop"
        if self.config.sample_output_length and not ignore_eos:
            tokens = self.rng.randint(1, max_tokens)
            return tokens, "length" if tokens == max_tokens else "stop"
        return max_tokens, "length"

    # -- life cycle --------------------------------------------------------------------------

    async def start(self, *, cold: bool | None = None) -> None:
        """Boot the engine and listen; ``cold`` (default: the config's) delays readiness."""
        from tiergate.emulator.routes import create_app  # noqa: PLC0415 - routes imports Replica

        cold_start = self.config.cold_start if cold is None else cold
        self._boot(cold_start)
        runner = web.AppRunner(
            create_app(self), handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, backlog=4096)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            await self.engine.stop()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]

    def _boot(self, cold: bool) -> None:
        limits = self.config.limits
        metrics = VllmMetrics(self.name, self.max_model_len)
        scheduler = Scheduler(self.perf, self.kv_blocks, limits)
        self._engine = Engine(
            scheduler,
            metrics,
            speed=self.config.speed,
            clock=self.clock,
            lag_tolerance_s=self.config.lag_tolerance_s,
        )
        self._engine.start()
        load_s = self.config.cold_start_s(self.perf) / self.config.speed if cold else 0.0
        self._ready_at = self.clock() + load_s

    async def crash(self, restart_after_s: float | None = None, *, cold: bool = True) -> None:
        """Stop answering at once: close the listening socket and every connection; the
        engine's state is lost. With ``restart_after_s`` (wall seconds), start again then."""
        runner, self._runner = self._runner, None
        self._ready_at = None
        if runner is not None:
            for site in list(runner.sites):
                await site.stop()  # stop accepting first: no connection sneaks in
            server = runner.server
            for connection in server.connections if server is not None else []:
                if connection.transport is not None:
                    connection.transport.abort()
        if self._engine is not None:
            await self._engine.stop()
            self._engine = None
        if runner is not None:
            await runner.cleanup()
        log.info("replica %d on port %d crashed", self.index, self.port)
        if restart_after_s is not None:
            self.spawn(self._restart(restart_after_s, cold))

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run ``coroutine`` in the background, owned by this replica (cancelled on close)."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _restart(self, after_s: float, cold: bool) -> None:
        await asyncio.sleep(after_s)
        self.restarts += 1
        try:
            await self.start(cold=cold)
        except OSError as exc:
            # The port was taken meanwhile: the replica stays down, as a pod that cannot bind.
            log.error("replica %d could not restart on port %d: %s", self.index, self.port, exc)
            return
        log.info("replica %d restarted on port %d", self.index, self.port)

    async def close(self) -> None:
        """Stop for good: background tasks, connections, engine."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            # wait() rather than gather(): it neither raises the tasks' CancelledError nor
            # swallows a cancellation of close() itself.
            await asyncio.wait(tasks)
        runner, self._runner = self._runner, None
        self._ready_at = None
        if self._engine is not None:
            await self._engine.stop()
            self._engine = None
        if runner is not None:
            await runner.cleanup()
