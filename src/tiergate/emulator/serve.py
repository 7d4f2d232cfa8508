"""Running ``tiergate emulate``: a cluster of replicas on one event loop until a signal."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from tiergate.emulator.cluster import EmulatorCluster
from tiergate.emulator.config import EmulatorConfig

log = logging.getLogger("tiergate.emulate")


async def serve(
    config: EmulatorConfig, replicas: int, host: str, port: int, echo: Callable[[str], None]
) -> None:
    """Serve until SIGTERM or SIGINT, then close every replica."""
    async with EmulatorCluster(config, replicas, host=host, port=port) as cluster:
        perf = cluster.replicas[0].perf
        echo(
            f"{replicas} x {config.name} on {config.tp} x {config.gpu}, speed {config.speed:g}: "
            f"KV cache {cluster.replicas[0].kv_blocks * config.limits.block_size} tokens, "
            f"load time {perf.load_time(config.storage):.1f} s from {config.storage}"
            + ("" if config.cold_start else " (cold start off)")
        )
        for replica in cluster.replicas:
            echo(f"replica {replica.index}: {replica.url}")
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await stop.wait()
        log.info("stopping %d replicas", replicas)


def run(
    config: EmulatorConfig,
    replicas: int,
    host: str,
    port: int,
    *,
    echo: Callable[[str], None] = print,
) -> None:
    """Blocking entry point of ``tiergate emulate``."""
    with _event_loop_runner() as runner:
        runner.run(serve(config, replicas, host, port, echo))


def _event_loop_runner() -> asyncio.Runner:
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up, absent on some platforms
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)
