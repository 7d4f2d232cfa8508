"""Errors of the fetcher. ``retryable`` ones are retried with backoff by the transfer engine;
the others end the fetch with their message (and an exit code, see ``cli/fetch.py``)."""

from __future__ import annotations

from tiergate.errors import TiergateError


class FetchError(TiergateError):
    """A fetch failed; ``retryable`` says whether trying again may help."""

    retryable = False


class RetryableError(FetchError):
    """A transient failure: a reset connection, a 5xx, a stall, a short read.

    ``retry_after_s`` is the server's ``Retry-After`` when it sent one (429, 503)."""

    retryable = True

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class LongReadError(RetryableError):
    """The server sent more bytes than the range asked for: none of that answer is trusted."""


class SourceError(FetchError):
    """The source refuses or lacks something (401, 403, 404, a bad URL): retrying will not help."""


class SpaceError(FetchError):
    """DEST has not room for the plan, or ran out of room during the transfer."""


class VerifyError(FetchError):
    """A file's bytes do not match its expected sha256 (or a safetensors shard is inconsistent)
    after the allowed re-downloads."""


class LockTimeoutError(FetchError):
    """Another fetcher held DEST's lock, or a leader's marker did not appear, for too long."""
