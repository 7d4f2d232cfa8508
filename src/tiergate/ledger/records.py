"""What the ledger stores: one record per request, and the virtual keys."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One client request, as it ended. Times are Unix seconds (UTC); money is USD.

    ``fallbacks`` lists why tiers were left, in order, as ``tier:reason`` joined by ``,``
    (empty when the first tier attempted served). ``tier`` is ``none`` when no tier served.
    ``input_tokens`` counts every prompt token; ``cached_tokens`` and ``cache_write_tokens``
    are the parts of it read from and written to the provider's prompt cache.
    """

    at: float
    request_id: str
    key_id: str | None
    team: str | None
    project: str | None
    stage: str | None
    model: str
    tier: str
    attempts: int
    fallbacks: str
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    cost_usd: float
    latency_s: float
    ttft_s: float | None
    status: int
    error: str | None


class ScopeKind(StrEnum):
    """What a budget or a rate limit applies to."""

    KEY = "key"
    TEAM = "team"
    PROJECT = "project"


@dataclass(frozen=True, slots=True)
class Scope:
    kind: ScopeKind
    name: str

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.name}"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A virtual key as stored: never the key itself, only its SHA-256.

    ``key_id`` is public (logs, metrics labels, reports); ``models`` empty means every model.
    ``budget_days`` 0 means the UTC calendar month, N > 0 a rolling window of N days.
    """

    key_id: str
    key_hash: str
    name: str | None
    team: str | None
    project: str | None
    models: tuple[str, ...]
    budget_usd: float | None
    budget_days: int
    rpm: int | None
    tpm: int | None
    created_at: float
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None
