"""The test suite's own PostgreSQL and Redis: real servers, a fresh database per test."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.services import (
    PostgresServer,
    ServiceMissingError,
    optional_module,
    postgres_bindir,
    start_redis,
)

asyncpg = optional_module("asyncpg", extra="postgres")
aioredis = optional_module("redis.asyncio", extra="redis")


async def test_postgres_dsn_is_a_database_of_its_own(postgres_dsn: str) -> None:
    connection = await asyncpg.connect(postgres_dsn, timeout=10)
    try:
        assert postgres_dsn.startswith("postgresql://postgres@127.0.0.1:")
        database = postgres_dsn.rpartition("/")[2]
        assert await connection.fetchval("SELECT current_database()") == database
        await connection.execute("CREATE TABLE spend (team text, usd numeric)")
        await connection.execute("INSERT INTO spend VALUES ('ml', 1.25), ('ml', 0.75)")
        assert await connection.fetchval("SELECT sum(usd) FROM spend WHERE team = 'ml'") == 2
    finally:
        await connection.close()


@pytest.mark.parametrize("run", [1, 2])
async def test_postgres_database_starts_empty_in_every_test(postgres_dsn: str, run: int) -> None:
    connection = await asyncpg.connect(postgres_dsn, timeout=10)
    try:
        tables = "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        assert await connection.fetchval(tables) == 0
        await connection.execute("CREATE TABLE marker (run int)")
    finally:
        await connection.close()


async def test_postgres_is_throwaway_and_loopback_only(postgres_server: PostgresServer) -> None:
    # Over the unix socket in the server's temporary directory, as well as over TCP.
    connection = await asyncpg.connect(
        host=str(postgres_server.socket_dir), port=postgres_server.port, user="postgres", timeout=10
    )
    try:
        assert await connection.fetchval("SHOW fsync") == "off"
        assert await connection.fetchval("SHOW listen_addresses") == "127.0.0.1"
        assert await connection.fetchval("SELECT current_user") == "postgres"
    finally:
        await connection.close()


async def test_dropped_database_is_gone(postgres_server: PostgresServer) -> None:
    postgres_server.create_database("t_dropped")
    kept = await asyncpg.connect(postgres_server.dsn("t_dropped"), timeout=10)
    try:
        postgres_server.drop_database("t_dropped")  # even with a connection left open
    finally:
        await kept.close()
    connection = await asyncpg.connect(postgres_server.dsn(), timeout=10)
    try:
        found = await connection.fetchval(
            "SELECT count(*) FROM pg_database WHERE datname = 't_dropped'"
        )
        assert found == 0
    finally:
        await connection.close()


async def test_redis_url_connects(redis_url: str) -> None:
    client = aioredis.from_url(redis_url)
    try:
        assert await client.ping()
        await client.set("tiergate:probe", "1", px=60_000)
        assert await client.get("tiergate:probe") == b"1"
        assert await client.config_get("save") == {"save": ""}
        assert await client.config_get("appendonly") == {"appendonly": "no"}
    finally:
        await client.aclose()


@pytest.mark.parametrize("run", [1, 2])
async def test_redis_starts_empty_in_every_test(redis_url: str, run: int) -> None:
    client = aioredis.from_url(redis_url)
    try:
        assert await client.dbsize() == 0
        await client.set("tiergate:marker", run)
    finally:
        await client.aclose()


def test_stop_shuts_the_server_down() -> None:
    server = start_redis()
    server.stop()
    assert server.process.returncode is not None
    assert not server.directory.exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()


def test_missing_binary_names_the_apt_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServiceMissingError, match=r"apt-get install -y postgresql$"):
        postgres_bindir(debian_root=tmp_path)
    with pytest.raises(ServiceMissingError, match=r"apt-get install -y redis-server$"):
        start_redis()
