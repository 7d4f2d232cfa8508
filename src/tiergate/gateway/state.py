"""The gateway's per-app state, reached from handlers through an app key."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from tiergate.gateway.router import Router
from tiergate.telemetry.metrics import GatewayMetrics


@dataclass(slots=True)
class GatewayState:
    """The current router (swapped on reload) and the app's metrics."""

    router: Router
    metrics: GatewayMetrics
    retiring: set[asyncio.Task[None]] = field(default_factory=set)


STATE = web.AppKey("tiergate_state", GatewayState)
