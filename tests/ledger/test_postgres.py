"""The PostgreSQL store's own guarantees: an outage of the server, real group commits."""

from __future__ import annotations

import asyncio

import pytest

from tests.ledger.samples import T0, request
from tests.polling import eventually
from tests.services import PostgresServer
from tiergate.ledger.postgres import PostgresStore, redact_dsn
from tiergate.ledger.records import Scope, ScopeKind
from tiergate.ledger.store import StoreUnavailableError


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


async def test_server_down_mid_run_keeps_records_until_it_is_back(
    private_postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    store = PostgresStore(private_postgres.dsn(), flush_s=0.05, timeout_s=1.0, queue_limit=200)
    await store.open()
    try:
        for n in range(100):
            store.record(request(n))
        await store.flush()

        await asyncio.to_thread(private_postgres.stop)
        for n in range(100, 400):  # 200 queue (the limit), 100 are dropped
            store.record(request(n))
        await eventually(lambda: not store.available, what="store unavailable")
        with pytest.raises(StoreUnavailableError):
            await store.flush()
        with pytest.raises(StoreUnavailableError):
            await store.spend(Scope(ScopeKind.TEAM, "search"), T0)
        await asyncio.sleep(0.3)  # more group commits fail meanwhile
        assert len(messages(caplog, "writes failing")) == 1  # one line per outage
        assert store.stats.dropped == 100
        assert store.stats.queued == 200

        await asyncio.to_thread(private_postgres.start)
        await eventually(
            lambda: store.stats.queued == 0, timeout_s=10, what="queued records written"
        )
        assert messages(caplog, "writes working again")
        records = await store.requests(T0, T0 + 1000)
        assert [r.request_id for r in records] == [f"r{n}" for n in range(300)]
        assert store.available
    finally:
        await store.close()


async def test_close_waits_for_the_server_to_come_back(private_postgres: PostgresServer) -> None:
    store = PostgresStore(private_postgres.dsn(), flush_s=0.05, timeout_s=1.0)
    await store.open()
    await asyncio.to_thread(private_postgres.stop)
    for n in range(10):
        store.record(request(n))
    closing = asyncio.create_task(store.close())
    await asyncio.sleep(0.3)
    assert not closing.done()  # still trying
    await asyncio.to_thread(private_postgres.start)
    await asyncio.wait_for(closing, 10)
    assert private_postgres.sql("SELECT count(*) FROM requests") == "10"


async def test_a_burst_is_committed_in_few_transactions(
    postgres_dsn: str, postgres_server: PostgresServer
) -> None:
    store = PostgresStore(postgres_dsn, flush_s=0.2)
    await store.open()
    try:
        # Transaction ids are handed out only to transactions that write: their count is the
        # number of commits, seen by the server itself (one more for the probe).
        before = int(postgres_server.sql("SELECT txid_current()"))
        for n in range(1000):
            store.record(request(n))
        await store.flush()
        after = int(postgres_server.sql("SELECT txid_current()"))
        assert after - before - 1 <= 2
        assert len(await store.requests(T0, T0 + 1000)) == 1000
    finally:
        await store.close()


async def test_open_fails_clearly_when_the_server_is_unreachable(
    private_postgres: PostgresServer,
) -> None:
    private_postgres.stop()
    store = PostgresStore(private_postgres.dsn(), timeout_s=1.0)
    with pytest.raises(StoreUnavailableError, match=r"postgresql://postgres@127\.0\.0\.1"):
        await store.open()
    await store.close()  # nothing to do, no error


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://ledger:s3cret@db:5432/tiergate", "postgresql://ledger@db:5432/tiergate"),
        ("postgres://ledger@db/tiergate", "postgres://ledger@db/tiergate"),
        (
            "postgresql://db/tiergate?user=ledger&password=s3cret&sslmode=require",
            "postgresql://db/tiergate?user=ledger&sslmode=require",
        ),
    ],
)
def test_url_never_shows_the_password(dsn: str, shown: str) -> None:
    assert redact_dsn(dsn) == shown
    assert PostgresStore(dsn).url == shown
