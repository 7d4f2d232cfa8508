"""The one exception tree of tiergate.

    TiergateError
     ├── SpecError              a fleet spec failed to load or validate; carries every issue found
     ├── TranslationError       a request that a provider's API cannot express (answered 400)
     ├── ListenError            a server cannot listen on its address (port in use, no such address)
     ├── StoreUnavailableError  the ledger store, or the shared limits store, cannot be used now
     │    ├── BudgetStoreUnavailableError  (tiergate.ledger.budget) Redis holding budgets
     │    └── LimiterUnavailableError      Redis holding rate limits
     └── UpstreamError          an attempt on one tier's upstream failed before a response
          ├── UpstreamConnectError      the connection could not be opened
          ├── UpstreamCredentialsError  no credentials to sign the request with
          ├── UpstreamResetError        the connection broke before the response was complete
          ├── UpstreamStreamError       the upstream sent an error inside a started stream
          └── UpstreamTimeoutError      connect, first-byte or total time limit reached

Every ``UpstreamError`` is a transport failure: the cascade moves on to the next tier. Upstream
HTTP errors are not exceptions but replies with a status, which the cascade policy classifies.

Lower-level errors (YAML, pydantic, OS) are translated into these in exactly one place each,
with ``raise ... from``. Errors become CLI messages only at the CLI edge.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass


class TiergateError(Exception):
    """Base class of every error tiergate raises on purpose."""


@dataclass(frozen=True, slots=True)
class SpecIssue:
    """One problem in a fleet spec, located in its file.

    ``line`` and ``column`` are 1-based; 0 means the position is unknown (for example a file
    that could not be read). ``path`` is the field path in the document, such as
    ``models[1].provider``; empty for the document as a whole.
    """

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line == 0 else f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class SpecError(TiergateError):
    """A fleet spec is invalid. ``issues`` lists every problem found, in file order."""

    def __init__(self, issues: Sequence[SpecIssue]) -> None:
        self.issues = tuple(sorted(issues, key=lambda i: (i.file, i.line, i.column, i.path)))
        count = len(self.issues)
        lines = "\n".join(str(issue) for issue in self.issues)
        super().__init__(f"{count} error{'s' if count != 1 else ''} in fleet spec:\n{lines}")


class TranslationError(TiergateError):
    """A request a provider cannot express in its upstream's API; ``param`` names the field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class ListenError(TiergateError):
    """A server cannot listen on ``host:port``; ``reason`` is the errno of the failed bind."""

    def __init__(self, host: str, port: int, reason: int) -> None:
        self.host = host
        self.port = port
        self.reason = reason
        if reason == errno.EADDRINUSE:
            message = f"port {port} on {host} is already in use"
        else:
            message = f"cannot listen on port {port} of {host}: {os.strerror(reason)}"
        super().__init__(message)


class StoreUnavailableError(TiergateError):
    """The ledger store (or the store of shared limits) cannot be reached or written now: the
    gateway fails open or closed on it, by configuration."""


class LimiterUnavailableError(StoreUnavailableError):
    """The shared rate limiter (Redis) cannot be reached or answered wrongly."""


class UpstreamError(TiergateError):
    """An attempt on a tier's upstream failed without a usable response.

    ``reason`` is the short, bounded name used in metrics and in the error's list of attempts.
    """

    reason = "upstream_error"

    def __init__(self, tier: str, detail: str) -> None:
        self.tier = tier
        self.detail = detail
        super().__init__(f"{tier}: {detail}")


class UpstreamConnectError(UpstreamError):
    reason = "connect_error"


class UpstreamCredentialsError(UpstreamError):
    reason = "credentials"


class UpstreamResetError(UpstreamError):
    reason = "reset"


class UpstreamStreamError(UpstreamError):
    """An error event inside a stream; ``status`` is the HTTP status it stands for."""

    reason = "stream_error"

    def __init__(self, tier: str, detail: str, status: int) -> None:
        super().__init__(tier, detail)
        self.status = status


class UpstreamTimeoutError(UpstreamError):
    """``phase`` is ``connect``, ``first_byte``, ``idle`` (silence between chunks) or ``total``."""

    reason = "timeout"

    def __init__(self, tier: str, detail: str, phase: str) -> None:
        super().__init__(tier, detail)
        self.phase = phase
        if phase in ("first_byte", "idle"):
            self.reason = f"{phase}_timeout"


class SimulationError(TiergateError):
    """A simulation cannot run as asked: a tier it cannot model, a workload it cannot build."""
