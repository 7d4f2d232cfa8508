"""What every ledger store does, SQLite and PostgreSQL alike (each test runs on both)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tests.ledger.conftest import MakeStore
from tests.ledger.samples import T0, key, request
from tests.polling import eventually
from tiergate.ledger.records import Scope, ScopeKind
from tiergate.ledger.store import KeyConflictError, StoreUnavailableError


async def test_records_read_back_exactly_in_time_order(make_store: MakeStore) -> None:
    store = await make_store()
    odd = request(
        2,
        at=T0 + 2.000_001,
        key_id=None,
        team=None,
        project=None,
        stage=None,
        tier="none",
        attempts=3,
        fallbacks="onprem:status_503,cloud:timeout",
        input_tokens=2**40,
        cached_tokens=7,
        cache_write_tokens=9,
        cost_usd=0.1 + 0.2,
        latency_s=1 / 3,
        ttft_s=None,
        status=502,
        error="upstream → gave up ✓ 'quoted' \"too\"",
    )
    first = request(1, at=T0 + 1e-6, cost_usd=1e-9)
    last = request(3, at=T0 + 3)
    for record in (odd, last, first):  # out of order: reads come back in time order
        store.record(record)
    await store.flush()
    assert await store.requests(T0, T0 + 10) == [first, odd, last]
    # [since, until): the record at ``until`` is left out, the one at ``since`` is in.
    assert await store.requests(T0 + 1e-6, T0 + 3) == [first, odd]
    assert await store.requests(T0 + 4, T0 + 10) == []


async def test_spend_per_scope_since_a_time(make_store: MakeStore) -> None:
    store = await make_store()
    records = [
        request(0, cost_usd=0.25, key_id="k1", team="a", project="p"),
        request(1, cost_usd=0.5, key_id="k1", team="a", project="q"),
        request(2, cost_usd=1.5, key_id="k2", team="a", project="p"),
        request(3, cost_usd=4.0, key_id="k2", team="b", project=None),
    ]
    for record in records:
        store.record(record)
    await store.flush()
    assert await store.spend(Scope(ScopeKind.TEAM, "a"), T0) == 2.25
    assert await store.spend(Scope(ScopeKind.TEAM, "a"), T0 + 1) == 2.0  # at >= since
    assert await store.spend(Scope(ScopeKind.TEAM, "b"), T0) == 4.0
    assert await store.spend(Scope(ScopeKind.KEY, "k1"), T0) == 0.75
    assert await store.spend(Scope(ScopeKind.KEY, "k2"), T0 + 3) == 4.0
    assert await store.spend(Scope(ScopeKind.PROJECT, "p"), T0) == 1.75
    assert await store.spend(Scope(ScopeKind.PROJECT, "p"), T0 + 2.5) == 0.0
    assert await store.spend(Scope(ScopeKind.TEAM, "nobody"), T0) == 0.0


async def test_keys_add_find_revoke_list(make_store: MakeStore) -> None:
    store = await make_store()
    plain = key("k-plain", "secret-1")
    rich = key(
        "k-rich",
        "secret-2",
        name="ranker prod",
        team="search",
        project="ranker",
        models=("qwen3-32b", "claude-sonnet"),
        budget_usd=125.5,
        budget_days=7,
        rpm=600,
        tpm=100_000,
        created_at=T0 + 60,
    )
    await store.add_key(rich)
    await store.add_key(plain)
    assert await store.list_keys() == [plain, rich]  # by creation time
    assert await store.find_key(rich.key_hash) == rich
    assert await store.find_key("0" * 64) is None

    with pytest.raises(KeyConflictError):
        await store.add_key(key("k-plain", "another secret"))
    with pytest.raises(KeyConflictError):
        await store.add_key(key("k-other", "secret-1"))

    assert await store.revoke_key("k-rich", T0 + 120) is True
    assert await store.revoke_key("k-rich", T0 + 180) is False  # already revoked
    assert await store.revoke_key("k-missing", T0) is False
    revoked = await store.find_key(rich.key_hash)
    assert revoked is not None
    assert revoked.revoked_at == T0 + 120
    assert not revoked.active
    assert [k.active for k in await store.list_keys()] == [True, False]


async def test_concurrent_writers_lose_nothing(make_store: MakeStore) -> None:
    store = await make_store()

    async def writer(task: int) -> None:
        for n in range(500):
            store.record(request(task * 1000 + n))
            if n % 25 == 0:
                await asyncio.sleep(0)
            if n % 200 == 0:
                await store.flush()
        await store.flush()

    await asyncio.gather(*(writer(task) for task in range(8)))
    records = await store.requests(T0, T0 + 10_000)
    expected = {f"r{task * 1000 + n}" for task in range(8) for n in range(500)}
    assert len(records) == 4000
    assert {r.request_id for r in records} == expected


async def test_record_from_other_threads(make_store: MakeStore) -> None:
    store = await make_store()

    def writer(thread: int) -> None:
        for n in range(500):
            store.record(request(thread * 1000 + n))

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    await asyncio.to_thread(lambda: [thread.join(10) for thread in threads])
    await store.flush()
    assert len(await store.requests(T0, T0 + 10_000)) == 4000


async def test_records_are_written_within_flush_s_without_a_flush(make_store: MakeStore) -> None:
    store = await make_store(flush_s=0.1)
    store.record(request(1))

    async def written() -> bool:
        return len(await store.requests(T0, T0 + 10)) == 1

    await eventually(written, timeout_s=2.0, what="record written by the group commit")
    assert store.stats.commits >= 1  # by the writer's own group commit: flush() was never called


async def test_group_commit_groups_a_burst(make_store: MakeStore) -> None:
    store = await make_store(flush_s=0.2)
    for n in range(1000):
        store.record(request(n))
    await store.flush()
    stats = store.stats
    assert stats.written == 1000
    # One transaction for the burst (two when a timer commit fell in the middle of it).
    assert stats.commits <= 2
    assert len(await store.requests(T0, T0 + 10_000)) == 1000


async def test_records_survive_close_and_reopen(make_store: MakeStore) -> None:
    store = await make_store(flush_s=10.0)  # nothing written before close
    for n in range(300):
        store.record(request(n))
    await store.add_key(key("k1", "secret"))
    await store.close()
    again = await make_store()
    assert [r.request_id for r in await again.requests(T0, T0 + 1000)] == [
        f"r{n}" for n in range(300)
    ]
    assert [k.key_id for k in await again.list_keys()] == ["k1"]


async def test_a_closed_store_drops_records_without_raising(make_store: MakeStore) -> None:
    store = await make_store()
    await store.close()
    store.record(request(1))
    assert store.stats.dropped == 1
    with pytest.raises(StoreUnavailableError):
        await store.spend(Scope(ScopeKind.TEAM, "a"), T0)
