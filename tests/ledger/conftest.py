"""Fixtures of the ledger tests: real PostgreSQL (a throwaway cluster for the session, a fresh
database per test) and the two store kinds behind one parametrized fixture.

``postgres_dsn`` has the name and meaning of the suite-wide fixture, so that it can be swapped
for it. The PostgreSQL tests are skipped when the server binaries are not installed (and fail
instead when ``CI`` is set: CI must run every test).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ledger.pgcluster import INSTALL, Cluster, find_bindir
from tiergate.ledger.sqlite import SQLiteStore

Store = Any  # SQLiteStore | PostgresStore: the PostgreSQL module is imported only when used
MakeStore = Callable[..., Awaitable[Store]]


def _bindir() -> Path:
    bindir = find_bindir()
    if bindir is None:
        message = f"PostgreSQL server binaries (initdb, postgres) not found: {INSTALL}"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI is set: every test must run)")
        pytest.skip(message)
    return bindir


@pytest.fixture(scope="session")
def ledger_postgres() -> Iterator[Cluster]:
    """One throwaway PostgreSQL cluster for the session's ledger tests."""
    cluster = Cluster(_bindir())
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def postgres_dsn(ledger_postgres: Cluster) -> Iterator[str]:
    """The DSN of a new, empty database (dropped after the test)."""
    name = f"t_{uuid.uuid4().hex}"
    ledger_postgres.sql(f'CREATE DATABASE "{name}"')
    yield ledger_postgres.dsn(name)
    ledger_postgres.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def private_postgres() -> Iterator[Cluster]:
    """A cluster of this test's own, which it may stop and start."""
    cluster = Cluster(_bindir())
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


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
