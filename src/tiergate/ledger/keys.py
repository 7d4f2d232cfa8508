"""Virtual keys: made once, stored as SHA-256 only, looked up from a short-lived cache.

A key reads ``sk-tg-`` followed by 43 URL-safe characters (256 random bits); its public id
``tk_`` + 10 hex characters is random too (nothing about the key can be derived from it) and is
what logs, metrics and reports show. Lookup hashes what the client presented and compares
digests in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from tiergate.ledger.records import KeyRecord
from tiergate.ledger.store import LedgerStore

KEY_PREFIX = "sk-tg-"
# The largest figures a key may carry: beyond any real budget or rate, and small enough that
# every store holds them exactly (SQLite and PostgreSQL integers; Redis' Lua doubles count
# budgets in micro-USD, exact below 2**53).
MAX_BUDGET_USD = 1e9
MAX_PER_MINUTE = 10**12


def key_hash(key: str) -> str:
    # surrogateescape: a header's bytes that are not UTF-8 reach us escaped; they hash as sent.
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def new_key(template: KeyRecord) -> tuple[str, KeyRecord]:
    """A fresh key and its record: ``template``'s settings with a new id and hash."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    record = replace(template, key_id="tk_" + secrets.token_hex(5), key_hash=key_hash(key))
    return key, record


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a client sent: ``Authorization: Bearer …`` (OpenAI SDKs), else ``x-api-key``
    or ``api-key`` (Anthropic- and Azure-style clients)."""
    authorization = headers.get("Authorization")
    if authorization is not None:
        scheme, _, value = authorization.partition(" ")
        return value.strip() or None if scheme.lower() == "bearer" else None
    return headers.get("x-api-key") or headers.get("api-key")


class KeyRing:
    """The active keys, refreshed from the store at most every ``ttl_s`` (and on demand after
    a change through this gateway), so a revoked key stops working within ``ttl_s``."""

    def __init__(
        self, store: LedgerStore, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._clock = clock
        self._by_hash: dict[str, KeyRecord] = {}
        self._any = False
        self._loaded_at: float | None = None

    async def refresh(self) -> None:
        keys = await self._store.list_keys()
        self._by_hash = {k.key_hash: k for k in keys if k.active}
        self._any = bool(keys)
        self._loaded_at = self._clock()

    async def _fresh(self) -> None:
        if self._loaded_at is None or self._clock() - self._loaded_at >= self._ttl_s:
            await self.refresh()

    async def any_keys(self) -> bool:
        """Whether any key was ever made (revoking the last one does not open the gateway)."""
        await self._fresh()
        return self._any

    async def lookup(self, key: str) -> KeyRecord | None:
        """The active key record for ``key``, or None."""
        await self._fresh()
        digest = key_hash(key)
        record = self._by_hash.get(digest)
        if record is None or not hmac.compare_digest(record.key_hash, digest):
            return None
        return record


def key_view(key: KeyRecord) -> dict[str, Any]:
    """What the API shows of a key: everything but its hash."""
    return {
        "key_id": key.key_id,
        "name": key.name,
        "team": key.team,
        "project": key.project,
        "models": list(key.models),
        "budget_usd": key.budget_usd,
        "budget_days": key.budget_days,
        "rpm": key.rpm,
        "tpm": key.tpm,
        "created_at": key.created_at,
        "revoked_at": key.revoked_at,
    }
