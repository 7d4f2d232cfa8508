"""Shared fixtures: paths to the repository's example and test data; PostgreSQL and Redis.

The servers are real ones (``tests/services.py``), started on 127.0.0.1 the first time a test
asks for them and stopped when the session ends. Each test gets a database of its own
(``postgres_dsn``) and an empty Redis (``redis_url``). Where a server is not installed the test
is skipped, or fails when the ``CI`` environment variable is set: CI must run every test.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tests.services import (
    PostgresServer,
    RedisServer,
    ServiceMissingError,
    missing,
    start_postgres,
    start_redis,
)

ROOT = Path(__file__).resolve().parent.parent

_Server = TypeVar("_Server")


@pytest.fixture
def examples() -> Path:
    return ROOT / "examples"


@pytest.fixture
def test_data() -> Path:
    return ROOT / "tests" / "data"


def _start(start: Callable[[], _Server]) -> _Server:
    try:
        return start()
    except ServiceMissingError as exc:
        missing(str(exc))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL cluster for the session (superuser ``postgres``, trust auth)."""
    server = _start(start_postgres)
    yield server
    server.remove()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A DSN (``postgresql://postgres@127.0.0.1:PORT/t_…``) of a new, empty database."""
    name = f"t_{uuid.uuid4().hex}"
    postgres_server.create_database(name)
    yield postgres_server.dsn(name)
    postgres_server.drop_database(name)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One throwaway redis-server for the session, without persistence."""
    server = _start(start_redis)
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """``redis://127.0.0.1:PORT/0`` of a Redis emptied (FLUSHALL) for this test."""
    redis_server.flushall()
    return redis_server.url()
