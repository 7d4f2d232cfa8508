"""The access log: one structured line per proxied request, at INFO on ``tiergate.access``.

The line carries what an operator asks of a request (who, which model, which tier served it
after how many attempts, status, latency, tokens, cost) as fields; the logging setup of the
CLI writes them as JSON keys off a terminal and as ``name=value`` words on one. It names a key
by its id, never the key itself.
"""

from __future__ import annotations

import logging
from typing import Protocol

from tiergate.gateway.governance import Identity
from tiergate.providers import Usage

log = logging.getLogger("tiergate.access")

# The log record attribute the CLI's JSON formatter reads (tiergate.cli.logs.FIELDS); the
# gateway does not import the CLI, so the name is repeated here.
FIELDS = "fields"


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


def log_request(request_id: str, outcome: Finished, *, tier: str | None, cost: float) -> None:
    """Log the finished request ``outcome``, served by ``tier`` (None: by none) for ``cost``."""
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
    # The fields are the line: the formatter writes them as JSON keys or as name=value words.
    log.info("request", extra={FIELDS: fields})
