"""The ledger store protocol: where request records and virtual keys live.

Two implementations: SQLite (``sqlite:///path``, the embedded default for one gateway) and
PostgreSQL (``postgresql://…``, shared by several gateway replicas). ``record`` never blocks
the event loop: records are queued and written in groups (group commit) at least every
``flush_s``; ``close`` writes everything still queued. Reads are for admission (keys, spend)
and reports.
"""

from __future__ import annotations

from typing import Protocol

from tiergate.errors import StoreUnavailableError
from tiergate.ledger.records import KeyRecord, RequestRecord, Scope

__all__ = ["KeyConflictError", "LedgerStore", "StoreUnavailableError"]


class KeyConflictError(ValueError):
    """A key with the same ``key_id`` or ``key_hash`` is already stored."""


class LedgerStore(Protocol):
    url: str  # with any password removed

    async def open(self) -> None:
        """Connect and create the schema when missing."""
        ...

    async def close(self) -> None:
        """Write every queued record, then disconnect."""
        ...

    def record(self, record: RequestRecord) -> None:
        """Queue a record; it is written within ``flush_s``. Never blocks, never raises."""
        ...

    async def flush(self) -> None:
        """Write every queued record now."""
        ...

    @property
    def available(self) -> bool:
        """False while the last write or read failed (until one succeeds again)."""
        ...

    @property
    def problem(self) -> str | None:
        """While not ``available``, why not, without details that could be secret (what
        fails and the error's type); None while available."""
        ...

    async def add_key(self, key: KeyRecord) -> None:
        """Store a new key; :class:`KeyConflictError` when its id or hash is taken."""
        ...

    async def revoke_key(self, key_id: str, at: float) -> bool:
        """Mark a key revoked; False when there is no such active key."""
        ...

    async def list_keys(self) -> list[KeyRecord]: ...

    async def find_key(self, key_hash: str) -> KeyRecord | None: ...

    async def spend(self, scope: Scope, since: float) -> float:
        """USD spent by ``scope`` in records at or after ``since``."""
        ...

    async def requests(self, since: float, until: float) -> list[RequestRecord]:
        """The records with ``since <= at < until``, in time order."""
        ...
