"""The access log: one structured line per proxied request, on ``tiergate.access`` at INFO.

The line carries what an operator asks of a request (who, which model, which tier served it
after how many attempts, status, latency, tokens, cost) as fields; the logging setup of the
CLI writes them as JSON keys off a terminal and as ``name=value`` words on one. It names a key
by its id, never the key itself.

Lines are written in batches, as nginx's ``access_log ... buffer=`` does: a request only
appends its fields, and the lines of every request finished in one turn of the event loop go
out as one log record (one formatter call, one write) at the end of that turn. A log record per
request cost more than the rest of the gateway's own work on a request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from tiergate.gateway.governance import Identity
from tiergate.providers import Usage

log = logging.getLogger("tiergate.access")

# The log record attribute the CLI's formatters read (tiergate.cli.logs.LINES): a list of
# (time, fields), one line each. The gateway does not import the CLI, so the name is repeated.
LINES = "lines"


class Finished(Protocol):
    """What the access log reads of a finished request (the proxy's outcome)."""

    @property
    def identity(self) -> Identity: ...
    @property
    def model(self) -> str: ...
    @property
    def status(self) -> int: ...
    @property
    def attempts(self) -> list[tuple[str, str]]: ...
    @property
    def latency_s(self) -> float: ...
    @property
    def usage(self) -> Usage | None: ...
    @property
    def error(self) -> str | None: ...


class AccessLog:
    """The access lines of one gateway, batched per turn of its event loop."""

    def __init__(self) -> None:
        self._pending: list[tuple[float, dict[str, Any]]] = []

    def record(self, request_id: str, outcome: Finished, *, tier: str | None, cost: float) -> None:
        """The line of the finished request ``outcome``, served by ``tier`` (None: by none)
        for ``cost``; written at the end of this turn of the event loop."""
        if not log.isEnabledFor(logging.INFO):  # no work on the request path when it is off
            return
        usage = outcome.usage
        fields = {
            "request_id": request_id,
            "key_id": outcome.identity.key_id,
            "model": outcome.model,
            "tier": tier,
            "attempts": len(outcome.attempts),
            "status": outcome.status,
            "latency_ms": round(outcome.latency_s * 1000, 1),
            "input_tokens": usage.prompt if usage else 0,
            "output_tokens": usage.completion if usage else 0,
            "cost_usd": round(cost, 8),
            "error": outcome.error,
        }
        if not self._pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self._pending.append((time.time(), fields))

    def flush(self) -> None:
        """Write the lines not written yet (the event loop calls it; so does shutdown)."""
        lines, self._pending = self._pending, []
        if lines:
            log.info("request", extra={LINES: lines})
