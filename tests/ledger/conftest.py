"""Fixtures of the ledger tests: real PostgreSQL and the two store kinds behind one
parametrized fixture.

The PostgreSQL tests use the suite-wide ``postgres_server``/``postgres_dsn`` (``tests/conftest.py``:
one throwaway cluster for the session, a fresh database per test); ``private_postgres`` is a
cluster of a test's own, which it may stop and start again. Both come from ``tests/services.py``:
they are skipped when the server binaries are not installed (and fail instead when ``CI`` is
set: CI must run every test).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.services import PostgresServer, ServiceMissingError, missing, start_postgres
from tiergate.ledger.sqlite import SQLiteStore

Store = Any  # SQLiteStore | PostgresStore: the PostgreSQL module is imported only when used
MakeStore = Callable[..., Awaitable[Store]]


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    """A cluster of this test's own, which it may ``stop`` and ``start`` again (same data and
    port); removed after the test."""
    try:
        server = start_postgres()
    except ServiceMissingError as exc:
        missing(str(exc))
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    dsn: str = request.getfixturevalue("postgres_dsn")
    return dsn


@pytest.fixture
async def make_store(store_url: str) -> AsyncIterator[MakeStore]:
    """Open stores on ``store_url`` (``options`` go to the store's constructor); every store
    still open is closed after the test."""
    opened: list[Store] = []

    async def make(**options: Any) -> Store:
        options.setdefault("flush_s", 0.05)
        store: Store
        if store_url.startswith("sqlite:///"):
            store = SQLiteStore(store_url.removeprefix("sqlite:///"), **options)
        else:
            from tiergate.ledger.postgres import PostgresStore  # noqa: PLC0415

            store = PostgresStore(store_url, **options)
        await store.open()
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()
