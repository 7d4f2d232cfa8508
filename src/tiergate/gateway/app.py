"""``create_app``: builds the whole gateway for a fleet; nothing happens at import time."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiohttp import web

from tiergate.gateway.protocol import server_options
from tiergate.gateway.router import Router
from tiergate.gateway.routes import add_routes
from tiergate.gateway.state import STATE, GatewayState
from tiergate.spec import Fleet
from tiergate.telemetry.metrics import GatewayMetrics

log = logging.getLogger(__name__)


def create_app(
    fleet: Fleet,
    *,
    metrics: GatewayMetrics | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> web.Application:
    """An aiohttp application serving ``fleet``; health checks start with the app."""
    # The body limit is enforced per request from the fleet (it can change on reload).
    app = web.Application(
        client_max_size=1 << 40,
        handler_args=server_options(fleet.gateway),
    )
    gateway_metrics = metrics or GatewayMetrics()
    app[STATE] = GatewayState(Router(fleet, gateway_metrics, clock), gateway_metrics)
    add_routes(app)
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
    return app


async def reload(app: web.Application, fleet: Fleet) -> None:
    """Serve ``fleet`` from now on; requests in flight finish on the previous one."""
    state = app[STATE]
    fresh = Router(fleet, state.metrics, state.router.clock)
    try:
        await fresh.start()
    except BaseException:
        await fresh.close()
        raise
    previous, state.router = state.router, fresh
    task = asyncio.create_task(previous.retire(fleet.gateway.drain_timeout_s))
    state.retiring.add(task)
    task.add_done_callback(state.retiring.discard)
    log.info("fleet reloaded from %s: %d tiers", fleet.source, len(fleet.tiers))


async def _start(app: web.Application) -> None:
    await app[STATE].router.start()


async def _stop(app: web.Application) -> None:
    for task in list(app[STATE].retiring):
        await task
    await app[STATE].router.close()
    app[STATE].access.flush()  # the lines of the last requests drained
