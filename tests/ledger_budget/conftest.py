"""Budget books under test: the same behaviour is asked of the local and the Redis book.

``books`` builds books of the kind under test; a Redis book gets a client of its own (as a
replica would), closed at the end of the test. ``Ledger`` stands for the ledger store: what it
answers to ``spend`` is what a restarted gateway seeds its budgets from.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from tiergate.ledger.budget import BudgetBook, LocalBudgetBook, Seed
from tiergate.ledger.budget_redis import RedisBudgetBook
from tiergate.ledger.records import Scope, ScopeKind

KEY = Scope(ScopeKind.KEY, "k1")
TEAM = Scope(ScopeKind.TEAM, "ml")
PROJECT = Scope(ScopeKind.PROJECT, "search")


def ts(year: int, month: int, day: int, *time: int) -> float:
    """Unix seconds of a UTC date and optional hour, minute, second."""
    hour, minute, second = (*time, 0, 0, 0)[:3]
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


@dataclass
class Ledger:
    """Spend as the ledger store has recorded it; counts the questions asked."""

    records: list[tuple[float, Scope, float]] = field(default_factory=list)
    asked: list[tuple[Scope, float]] = field(default_factory=list)

    def add(self, at: float, scope: Scope, usd: float) -> None:
        self.records.append((at, scope, usd))

    async def spend(self, scope: Scope, since: float) -> float:
        self.asked.append((scope, since))
        await asyncio.sleep(0.001)  # a real query awaits: other requests run meanwhile
        return sum(usd for at, s, usd in self.records if s == scope and at >= since)


BookFactory = Callable[..., BudgetBook]


@pytest.fixture(params=["local", "redis"])
async def books(request: pytest.FixtureRequest) -> AsyncIterator[BookFactory]:
    """``books(seed=None, **options)`` makes a book. Each Redis book has a client of its own,
    as a replica would, on one Redis emptied for the test."""
    if request.param == "local":

        def make_local(seed: Seed | None = None) -> BudgetBook:
            return LocalBudgetBook(seed)

        yield make_local
        return
    url: str = request.getfixturevalue("redis_url")
    made: list[RedisBudgetBook] = []

    def make_redis(seed: Seed | None = None, **options: Any) -> BudgetBook:
        made.append(RedisBudgetBook.from_url(url, seed, timeout_s=5.0, **options))
        return made[-1]

    yield make_redis
    for book in made:
        await book.aclose()
