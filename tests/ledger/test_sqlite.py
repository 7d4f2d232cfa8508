"""The SQLite store's own guarantees: WAL, a full disk, a locked database, kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from tests.ledger.samples import T0, request
from tests.polling import eventually
from tiergate.ledger.rows import REQUEST_COLUMNS
from tiergate.ledger.sqlite import BATCH_ROWS, STATEMENT_ROWS, SQLiteStore, rows_per_statement
from tiergate.ledger.store import StoreUnavailableError

CRASH_WRITER = Path(__file__).with_name("crash_writer.py")


def count_rows(path: Path) -> int:
    connection = sqlite3.connect(path)
    try:
        rows: int = connection.execute("SELECT count(*) FROM requests").fetchone()[0]
        return rows
    finally:
        connection.close()


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


async def test_database_is_in_wal_mode(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "ledger.db")
    await store.open()
    await store.close()
    connection = sqlite3.connect(tmp_path / "ledger.db")
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        connection.close()


async def test_a_group_larger_than_a_statement_and_a_transaction_lands_whole_in_order(
    tmp_path: Path,
) -> None:
    count = BATCH_ROWS + STATEMENT_ROWS + 7  # two transactions, several multi-row statements
    sent = [request(n, tier=f"tier-{n % 3}", cost_usd=n / 1000) for n in range(count)]
    store = SQLiteStore(tmp_path / "ledger.db", flush_s=60)  # only flush() commits
    await store.open()
    try:
        for record in sent:
            store.record(record)
        await store.flush()
        assert await store.requests(T0, T0 + count) == sent
        assert store.stats.commits == 2
    finally:
        await store.close()


def test_rows_per_statement_follows_the_parameter_limit_of_this_sqlite() -> None:
    connection = sqlite3.connect(":memory:")
    try:
        assert rows_per_statement(connection) == STATEMENT_ROWS
        connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 100)
        assert rows_per_statement(connection) == 100 // len(REQUEST_COLUMNS)
    finally:
        connection.close()


async def test_full_disk_keeps_records_queued_until_space_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "ledger.db"
    # 64 KiB holds the schema and little else: a batch of 1 KiB records gets SQLITE_FULL.
    store = SQLiteStore(path, flush_s=0.02, queue_limit=500, max_bytes=64 * 1024)
    await store.open()
    try:
        for n in range(300):
            store.record(request(n, error="x" * 1000))
        await eventually(lambda: not store.available, what="store unavailable on a full disk")
        with pytest.raises(StoreUnavailableError, match="full"):
            await store.flush()
        await asyncio.sleep(0.2)  # several more group commits fail meanwhile
        assert len(messages(caplog, "writes failing")) == 1  # one line per outage
        assert "database or disk is full" in messages(caplog, "writes failing")[0]

        for n in range(300, 600):  # 200 fit in the queue (limit 500), 100 are dropped
            store.record(request(n, error="x" * 1000))
        assert store.stats.dropped == 100
        assert len(messages(caplog, "dropping records")) == 1
        assert count_rows(path) == 0

        store.max_bytes = None  # space is back
        await eventually(lambda: store.available, what="store available again")
        await store.flush()
        assert messages(caplog, "writes working again")
        records = await store.requests(T0, T0 + 1000)
        assert [r.request_id for r in records] == [f"r{n}" for n in range(500)]
    finally:
        await store.close()


async def test_locked_database_neither_loses_records_nor_blocks_the_loop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "ledger.db"
    store = SQLiteStore(path, flush_s=0.02, busy_timeout_s=1.0)
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        for n in range(50):
            store.record(request(n))
        await eventually(lambda: not store.available, what="store unavailable while locked")
        ticks_when_locked = len(gaps)
        assert "locked" in messages(caplog, "writes failing")[0]
        # WAL: reads go on while the writer waits for the lock.
        assert await store.requests(T0, T0 + 100) == []
        await eventually(lambda: len(gaps) > ticks_when_locked + 3, what="the loop ticking")
        assert not store.available  # still locked: the loop ran while the writer waited
        other.execute("ROLLBACK")
        await eventually(lambda: store.available, what="store available after the lock")
        assert len(await store.requests(T0, T0 + 100)) == 50
    finally:
        ticking.cancel()
        other.close()
        await store.close()
    # The writer waited a second at a time in SQLite's busy handler; the loop went on ticking.
    assert len(gaps) > ticks_when_locked


async def test_kill_9_loses_at_most_the_last_group(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CRASH_WRITER),
        str(path),
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    last = ""
    try:
        async with asyncio.timeout(30):
            while True:
                line = (await child.stdout.readline()).decode()
                assert line, "the writer exited early"
                last = line
                if int(line.split()[3]) >= 5000:  # "recorded N written W"
                    break
    finally:
        os.kill(child.pid, signal.SIGKILL)
        await child.wait()
    assert child.returncode == -signal.SIGKILL
    _, recorded, _, written = last.split()
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        ids = [row[0] for row in connection.execute("SELECT request_id FROM requests ORDER BY id")]
    finally:
        connection.close()
    # Everything the child saw committed is there, in order, with no gap: what was lost is
    # the tail of records still queued for the next group commit.
    assert len(ids) >= int(written)
    assert ids == [f"r{n}" for n in range(len(ids))]
    assert len(ids) <= int(recorded) + 50  # one more batch may have been recorded unprinted


async def test_close_keeps_trying_until_space_is_back(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    store = SQLiteStore(path, flush_s=0.02, max_bytes=64 * 1024, close_timeout_s=10.0)
    await store.open()
    for n in range(300):
        store.record(request(n, error="x" * 1000))
    closing = asyncio.create_task(store.close())
    await asyncio.sleep(0.2)
    assert not closing.done()  # still trying
    store.max_bytes = None
    await asyncio.wait_for(closing, 5)
    assert count_rows(path) == 300


async def test_close_gives_up_after_its_timeout_saying_how_many_were_lost(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(
        tmp_path / "ledger.db", flush_s=0.02, max_bytes=64 * 1024, close_timeout_s=0.2
    )
    await store.open()
    for n in range(300):
        store.record(request(n, error="x" * 1000))
    with pytest.raises(StoreUnavailableError, match="300 records could not be written"):
        await store.close()
