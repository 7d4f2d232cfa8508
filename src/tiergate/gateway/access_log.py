"""The access log: one structured line per proxied request, on ``tiergate.access`` at INFO.

The line carries what an operator asks of a request (who, which model, which tier served it
after how many attempts, status, latency, tokens, cost) as fields; the logging setup of the
CLI writes them as JSON keys off a terminal and as ``name=value`` words on one. It names a key
by its id, never the key itself.

Lines are written in batches, as nginx's ``access_log ... buffer= flush=`` does: a request only
appends its values, and the lines of the requests finished within :data:`FLUSH_S` go out as one
log record (one formatter call, one write). A log record per request cost more than the rest of
the gateway's own work on a request; each line keeps its request's own time.
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


# How long a line may wait for the ones after it: lines are written together, in one log record
# and one write, at most this long after the first of them.
FLUSH_S = 0.1

_Pending = tuple[
    float, str, str | None, str, str | None, int, int, float, Usage | None, float, str | None
]


class AccessLog:
    """The access lines of one gateway, written together at most :data:`FLUSH_S` apart."""

    def __init__(self) -> None:
        self._pending: list[_Pending] = []

    def record(self, request_id: str, outcome: Finished, *, tier: str | None, cost: float) -> None:
        """The line of the finished request ``outcome``, served by ``tier`` (None: by none)
        for ``cost``; written within :data:`FLUSH_S`."""
        if not log.isEnabledFor(logging.INFO):  # no work on the request path when it is off
            return
        if not self._pending:
            asyncio.get_running_loop().call_later(FLUSH_S, self.flush)
        # The values only: the line is built when it is written, off the request's path.
        self._pending.append(
            (
                time.time(),
                request_id,
                outcome.identity.key_id,
                outcome.model,
                tier,
                len(outcome.attempts),
                outcome.status,
                outcome.latency_s,
                outcome.usage,
                cost,
                outcome.error,
            )
        )

    def flush(self) -> None:
        """Write the lines not written yet (a timer calls it; so does shutdown)."""
        pending, self._pending = self._pending, []
        if pending:
            log.info("request", extra={LINES: [_line(values) for values in pending]})


def _line(values: _Pending) -> tuple[float, dict[str, Any]]:
    at, request_id, key_id, model, tier, attempts, status, latency_s, usage, cost, error = values
    return at, {
        "request_id": request_id,
        "key_id": key_id,
        "model": model,
        "tier": tier,
        "attempts": attempts,
        "status": status,
        "latency_ms": round(latency_s * 1000, 1),
        "input_tokens": usage.prompt if usage else 0,
        "output_tokens": usage.completion if usage else 0,
        "cost_usd": round(cost, 8),
        "error": error,
    }
