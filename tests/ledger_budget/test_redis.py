"""What only the shared book must do: hold across replicas, outlive a crash, fail loudly."""

from __future__ import annotations

import asyncio
import random
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.ledger_budget.conftest import KEY, Ledger, ts
from tests.ledger_budget.test_books import admitted, refused
from tiergate.ledger.budget import Budget, BudgetStoreUnavailableError, Reservation
from tiergate.ledger.budget_redis import RedisBudgetBook
from tiergate.ledger.records import Scope, ScopeKind

ROOT = Path(__file__).resolve().parents[2]
NOW = ts(2024, 11, 15, 12)


@pytest.fixture
async def replicas(redis_url: str) -> AsyncIterator[list[RedisBudgetBook]]:
    """Two books with clients of their own on one Redis, as two gateway replicas have."""
    books = [RedisBudgetBook.from_url(redis_url, timeout_s=5.0) for _ in range(2)]
    yield books
    for book in books:
        await book.aclose()


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    redis = Redis.from_url(redis_url, socket_timeout=5.0)
    yield redis
    await redis.aclose()


async def test_two_replicas_together_admit_exactly_what_the_budget_allows(
    replicas: list[RedisBudgetBook],
) -> None:
    budget = Budget(KEY, 50 * 0.037)
    results = await asyncio.gather(
        *(replicas[n % 2].reserve([budget], 0.037, NOW) for n in range(200))
    )
    held = [(n % 2, r) for n, r in enumerate(results) if isinstance(r, Reservation)]
    assert len(held) == 50
    assert {n for n, _ in held} == {0, 1}  # both replicas took part
    rng = random.Random(11)
    await asyncio.gather(*(replicas[n].settle(r, rng.uniform(0, 0.037), NOW) for n, r in held))
    spent, reserved = await replicas[0].status(budget, NOW)
    assert reserved == 0.0
    assert 0 < spent <= budget.limit_usd
    assert await replicas[1].status(budget, NOW) == (spent, reserved)


async def _line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    return (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()


async def test_two_gateway_processes_admit_exactly_what_the_budget_allows(
    redis_url: str, client: Redis
) -> None:
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.ledger_budget.replica",
            redis_url,
            "100",
            "0.037",
            str(50 * 0.037),
            str(n),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        for n in range(2)
    ]
    try:
        for proc in procs:
            assert await _line(proc) == "ready"
        await client.rpush("go", "1", "1")
        counts = [int(await _line(proc)) for proc in procs]
        await client.rpush("settle", "1", "1")
        for proc in procs:
            assert await _line(proc) == "settled"
            assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert sum(counts) == 50, counts
    book = RedisBudgetBook(client)
    spent, reserved = await book.status(Budget(Scope(ScopeKind.KEY, "shared"), 1.0), time.time())
    assert reserved == 0.0
    assert spent <= 50 * 0.037


async def test_two_replicas_seed_a_new_month_once(redis_url: str) -> None:
    ledger = Ledger()
    ledger.add(ts(2024, 11, 2), KEY, 0.5)
    books = [RedisBudgetBook.from_url(redis_url, ledger.spend, timeout_s=5.0) for _ in range(2)]
    try:
        budget = Budget(KEY, 1.0)
        results = await asyncio.gather(
            *(books[n % 2].reserve([budget], 0.1, NOW) for n in range(20))
        )
        assert sum(isinstance(r, Reservation) for r in results) == 5
        assert await books[1].status(budget, NOW) == (0.5, 0.5)
    finally:
        for book in books:
            await book.aclose()


async def test_a_crashed_replicas_reservations_expire(redis_url: str) -> None:
    budget = Budget(KEY, 1.0)
    crashed = RedisBudgetBook.from_url(redis_url, timeout_s=5.0, reservation_ttl_s=60)
    survivor = RedisBudgetBook.from_url(redis_url, timeout_s=5.0, reservation_ttl_s=60)
    try:
        lost = admitted(await crashed.reserve([budget], 1.0, NOW))
        await crashed.aclose()  # it never settles
        refused(await survivor.reserve([budget], 0.1, NOW + 59))
        assert await survivor.status(budget, NOW + 61) == (0.0, 0.0)
        later = admitted(await survivor.reserve([budget], 0.5, NOW + 61))
        # A request that did run past its reservation still has its cost counted.
        await survivor.settle(lost, 0.25, NOW + 62)
        await survivor.settle(later, 0.5, NOW + 62)
        assert await survivor.status(budget, NOW + 62) == (0.75, 0.0)
    finally:
        await survivor.aclose()


async def test_keys_outlive_their_window_and_reservations_their_ttl(
    redis_url: str, client: Redis
) -> None:
    book = RedisBudgetBook.from_url(redis_url, timeout_s=5.0, reservation_ttl_s=600)
    try:
        reservation = admitted(await book.reserve([Budget(KEY, 1.0)], 0.1, NOW))
        counter = await client.ttl("tiergate:budget:c:2024-11:-:key:k1")
        assert 31 * 86_400 < counter <= 33 * 86_400 + 601
        assert 0 < await client.pttl(f"tiergate:budget:r:{reservation.id}") <= 600_000
    finally:
        await book.aclose()


async def test_scripts_are_sent_again_to_a_redis_that_forgot_them(
    redis_url: str, client: Redis
) -> None:
    book = RedisBudgetBook.from_url(redis_url, timeout_s=5.0)
    try:
        budget = Budget(KEY, 1.0)
        admitted(await book.reserve([budget], 0.5, NOW))
        await client.script_flush()
        admitted(await book.reserve([budget], 0.5, NOW))
        refused(await book.reserve([budget], 0.5, NOW))
    finally:
        await book.aclose()


async def test_a_redis_that_lost_its_data_is_seeded_again(redis_url: str, client: Redis) -> None:
    ledger = Ledger()
    ledger.add(ts(2024, 11, 2), KEY, 0.7)
    book = RedisBudgetBook.from_url(redis_url, ledger.spend, timeout_s=5.0)
    try:
        budget = Budget(KEY, 1.0)
        assert await book.status(budget, NOW) == (0.7, 0.0)
        await client.flushall()
        refused(await book.reserve([budget], 0.4, NOW))
        assert await book.status(budget, NOW) == (0.7, 0.0)
    finally:
        await book.aclose()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_redis_down_is_a_budget_store_error_within_bounds() -> None:
    book = RedisBudgetBook.from_url(f"redis://127.0.0.1:{_closed_port()}/0", timeout_s=0.5)
    budget = Budget(KEY, 1.0)
    try:
        # A bound, not a measurement: a store that hangs instead of failing fails the test.
        async with asyncio.timeout(30):
            await _all_fail(book, budget)
    finally:
        await book.aclose()


async def _all_fail(book: RedisBudgetBook, budget: Budget) -> None:
    with pytest.raises(BudgetStoreUnavailableError, match="budget store: redis"):
        await book.reserve([budget], 0.1, NOW)
    with pytest.raises(BudgetStoreUnavailableError):
        await book.status(budget, NOW)
    reservation = Reservation("r1", NOW, 100_000, (budget,), ("2024-11:-:key:k1",), ())
    with pytest.raises(BudgetStoreUnavailableError):
        await book.settle(reservation, 0.1, NOW)
