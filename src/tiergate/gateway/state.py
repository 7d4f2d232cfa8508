"""The gateway's per-app state, reached from handlers through an app key."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from dataclasses import dataclass, field

from aiohttp import web

from tiergate.gateway.access_log import AccessLog
from tiergate.gateway.router import Router
from tiergate.telemetry.metrics import GatewayMetrics


class RequestIds:
    """Request ids unique across processes and restarts: a random prefix and a counter.

    Cheaper than a uuid4 per request (no system call), still unguessable across processes.
    """

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):012x}"


@dataclass(slots=True)
class GatewayState:
    """The current router (swapped on reload), the app's metrics and its access log."""

    router: Router
    metrics: GatewayMetrics
    retiring: set[asyncio.Task[None]] = field(default_factory=set)
    request_ids: RequestIds = field(default_factory=RequestIds)
    access: AccessLog = field(default_factory=AccessLog)


STATE = web.AppKey("tiergate_state", GatewayState)
