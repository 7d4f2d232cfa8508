"""A record the store cannot hold is dropped, logged once, and the writer goes on writing the
others (each test runs on SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ledger.conftest import MakeStore
from tests.ledger.samples import T0, request

# Values no SQL store can hold: a lone surrogate (a byte that is not UTF-8, as aiohttp hands it
# over) and an integer past 64 bits (an upstream's usage, say).
UNSTORABLE: list[dict[str, Any]] = [
    {"request_id": "r-\udcff"},
    {"stage": "plan\udcff"},
    {"input_tokens": 2**70},
]


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


async def test_a_record_it_cannot_hold_is_dropped_and_the_others_are_written(
    make_store: MakeStore, caplog: pytest.LogCaptureFixture
) -> None:
    store = await make_store()
    store.record(request(1))
    for n, fields in enumerate(UNSTORABLE, start=2):
        store.record(request(n, **fields))
    store.record(request(9))
    await store.flush()  # returns: nothing waits for the dropped records
    assert [r.request_id for r in await store.requests(T0, T0 + 100)] == ["r1", "r9"]
    assert store.available
    assert store.stats.dropped == len(UNSTORABLE)
    assert messages(caplog, "cannot hold")
    # The writer goes on: later records land.
    store.record(request(10))
    await store.flush()
    assert [r.request_id for r in await store.requests(T0, T0 + 100)] == ["r1", "r9", "r10"]


async def test_a_flood_of_records_it_cannot_hold_logs_one_line_per_kind(
    make_store: MakeStore, caplog: pytest.LogCaptureFixture
) -> None:
    store = await make_store()
    for n in range(60):
        store.record(request(n, request_id=f"r{n}-\udcff"))
        if n % 20 == 0:
            await store.flush()  # several group commits
    store.record(request(500))
    await store.flush()
    assert store.stats.dropped == 60
    assert len(messages(caplog, "cannot hold")) == 1
    assert [r.request_id for r in await store.requests(T0, T0 + 1000)] == ["r500"]


async def test_close_writes_every_record_queued_behind_one_it_cannot_hold(
    make_store: MakeStore,
) -> None:
    # A clean stop (SIGTERM) writes what is queued: a bad record must not take the rest along.
    store = await make_store(flush_s=10.0)  # nothing is written before close
    for n in range(100):
        store.record(request(n, request_id="r-\udcff") if n == 50 else request(n))
    await store.close()  # raises when records are left unwritten
    again = await make_store()
    written = [r.request_id for r in await again.requests(T0, T0 + 1000)]
    assert written == [f"r{n}" for n in range(100) if n != 50]
