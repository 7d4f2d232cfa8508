"""Governance end to end: ``tiergate serve`` processes sharing PostgreSQL and Redis, and the
SQLite ledger across ``kill -9`` and SIGTERM.

The gateways are real processes (``tests/e2e/conftest.py``); the upstream is a FakeUpstream in
this process; PostgreSQL and Redis are the suite's throwaway servers. Requests are sent as raw
bytes, so that the body size the gateway counts (one prompt token per byte in a budget's
reservation) is known here.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from aiohttp import web

from tests.e2e.conftest import ServeProcess, StartServe
from tests.gateway.helpers import CHAT, HELLO, fleet_yaml, tier
from tests.gateway.upstream import PROMPT_TOKENS, FakeUpstream
from tests.polling import eventually
from tests.services import optional_module

MASTER = "master-key-for-e2e-tests-0123456789"
# $1 per 1k tokens, in and out: a token costs 1,000 µUSD, so reservations are exact.
PRICE = {"per": "1k", "input": 1.0, "output": 1.0}
TOKEN_USD = 0.001
MAX_TOKENS = 10
COMPLETION_TOKENS = 5  # what FakeUpstream reports with its default 5 chunks


def write_spec(directory: Path, upstream: FakeUpstream, **governance: Any) -> Path:
    """A fleet of one priced tier on ``upstream``, with a governance section."""
    section = {"masterKey": MASTER, "keyCacheMs": 0, **governance}
    text = fleet_yaml([tier("main", upstream, pricing=PRICE)], gateway={"drainTimeoutMs": 5000})
    text += yaml.safe_dump({"governance": section}, sort_keys=False)
    path = directory / "fleet.yaml"
    path.write_text(text)
    return path


def chat_body() -> bytes:
    return orjson.dumps({"model": "main", "messages": HELLO, "max_tokens": MAX_TOKENS})


def client_session() -> aiohttp.ClientSession:
    # limit=0: every request of a burst gets its own connection at once.
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=20)
    )


@dataclass(frozen=True)
class Answer:
    request_id: str
    gateway: str
    status: int
    code: str | None
    retry_after: str | None
    at: float  # time.monotonic() when the answer was read


async def post_chat(
    http: aiohttp.ClientSession,
    gateway: ServeProcess,
    body: bytes,
    request_id: str,
    key: str | None = None,
) -> Answer:
    headers = {"Content-Type": "application/json", "x-request-id": request_id}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    async with http.post(gateway.url + CHAT, data=body, headers=headers) as response:
        payload = await response.json(content_type=None)
        error = payload.get("error") if isinstance(payload, dict) else None
        return Answer(
            request_id,
            gateway.name,
            response.status,
            error.get("code") if isinstance(error, dict) else None,
            response.headers.get("Retry-After"),
            time.monotonic(),
        )


async def create_key(
    http: aiohttp.ClientSession, gateway: ServeProcess, **settings: Any
) -> tuple[str, str]:
    headers = {"Authorization": f"Bearer {MASTER}"}
    async with http.post(gateway.url + "/admin/keys", json=settings, headers=headers) as response:
        body = await response.json()
        assert response.status == 201, body
        return body["key"], body["key_id"]


class HeldUpstream(FakeUpstream):
    """A FakeUpstream that holds every request until ``gate`` is set.

    The deterministic form of a stall: no request is answered, so no reservation is settled,
    before every request of the burst has been admitted or refused, however long that takes
    with two gateway processes on a busy machine.
    """

    def __init__(self) -> None:
        super().__init__("main")
        self.gate = asyncio.Event()

    async def _faults(self, request: web.Request) -> web.StreamResponse | None:
        await self.gate.wait()
        return await super()._faults(request)


async def burst(
    http: aiohttp.ClientSession,
    replicas: list[ServeProcess],
    count: int,
    key: str,
    prefix: str,
    *,
    held: HeldUpstream | None = None,
) -> list[Answer]:
    """``count`` concurrent requests, alternating between ``replicas``.

    With ``held`` (the replicas' upstream): once every request has been either answered by a
    gateway or held at the upstream, the upstream lets the held ones go.
    """
    body = chat_body()
    tasks = [
        asyncio.create_task(
            post_chat(http, replicas[n % len(replicas)], body, f"{prefix}-{n}", key)
        )
        for n in range(count)
    ]
    try:
        if held is not None:
            upstream = held

            def decided() -> bool:
                return sum(t.done() for t in tasks) + upstream.active_requests >= count

            await eventually(decided, timeout_s=20, what="every request admitted or refused")
    finally:
        if held is not None:
            held.gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [r for r in results if not isinstance(r, Answer)]
    assert not failures, failures[:3]
    return [r for r in results if isinstance(r, Answer)]


def needs_replica_extras() -> None:
    """The gateway processes need the postgres and redis extras."""
    optional_module("asyncpg", "postgres")
    optional_module("redis", "redis")


async def postgres_rows(dsn: str) -> list[tuple[str, str | None, int, str | None, float]]:
    """``(request_id, key_id, status, error, cost_usd)`` of every record in the ledger."""
    import asyncpg  # type: ignore[import-untyped, import-not-found, unused-ignore]  # noqa: PLC0415

    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await connection.fetch(
            "SELECT request_id, key_id, status, error, cost_usd FROM requests", timeout=10
        )
    finally:
        await connection.close(timeout=10)
    return [tuple(row) for row in rows]


def sqlite_rows(path: Path) -> list[tuple[str, int]]:
    """``(request_id, status)`` of every record; fails unless the file is intact."""
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return list(connection.execute("SELECT request_id, status FROM requests"))
    finally:
        connection.close()


def assert_no_unchecked_admissions(replicas: list[ServeProcess]) -> None:
    for replica in replicas:
        assert "unavailable" not in replica.log_text(), f"{replica.name} lost Redis or PostgreSQL"


async def test_two_replicas_share_one_budget_and_never_overspend(
    serve: StartServe, tmp_path: Path, postgres_dsn: str, redis_url: str
) -> None:
    """200 concurrent requests over two gateways against a key budget of exactly 50
    reservations: 50 are served and 150 refused (429 ``budget_exceeded``) in all, not 50 per
    replica; after SIGTERM the PostgreSQL ledger holds all 200 records and the key's cost is
    within its budget."""
    needs_replica_extras()
    async with HeldUpstream() as upstream, client_session() as http, asyncio.timeout(50):
        spec = write_spec(tmp_path, upstream, ledger={"store": postgres_dsn}, redis=redis_url)
        replicas = list(await asyncio.gather(serve(spec, "replica-a"), serve(spec, "replica-b")))
        # Reservation: every body byte a prompt token, plus max_tokens, at $0.001 a token.
        reservation = (len(chat_body()) + MAX_TOKENS) * TOKEN_USD
        budget = round(50 * reservation, 6)
        key, key_id = await create_key(http, replicas[0], budget_usd=budget)
        answers = await burst(http, replicas, 200, key, "budget", held=upstream)
        reached_upstream = len(upstream.requests)
        exits = await asyncio.gather(*(replica.stop() for replica in replicas))
    rows = await postgres_rows(postgres_dsn)

    statuses = Counter(a.status for a in answers)
    by_gateway = sorted(Counter((a.gateway, a.status) for a in answers).items())
    print(f"budget: {by_gateway}")
    assert statuses == {200: 50, 429: 150}, by_gateway
    assert {a.code for a in answers if a.status == 429} == {"budget_exceeded"}
    assert reached_upstream == 50  # a refused request never reaches an upstream
    assert exits == [0, 0]
    assert_no_unchecked_admissions(replicas)
    assert sorted(row[0] for row in rows) == sorted(a.request_id for a in answers)
    assert all(row[1] == key_id for row in rows)
    assert Counter((row[2], row[3]) for row in rows) == {
        (200, None): 50,
        (429, "budget_exceeded"): 150,
    }
    spent = sum(row[4] for row in rows)
    assert spent <= budget
    assert spent == pytest.approx(50 * (PROMPT_TOKENS + COMPLETION_TOKENS) * TOKEN_USD)


async def test_two_replicas_share_one_rate_limit(
    serve: StartServe, tmp_path: Path, postgres_dsn: str, redis_url: str
) -> None:
    """A key with ``rpm: 30``: 100 concurrent requests over two gateways sharing Redis admit
    exactly 30; the other 70 get 429 ``rate_limit_exceeded`` with a Retry-After. (The bucket
    refills one request every 2 s, so the burst must be decided within 2 s: it takes well under
    one.)"""
    needs_replica_extras()
    async with FakeUpstream("main") as upstream, client_session() as http, asyncio.timeout(40):
        spec = write_spec(tmp_path, upstream, ledger={"store": postgres_dsn}, redis=redis_url)
        replicas = list(await asyncio.gather(serve(spec, "replica-a"), serve(spec, "replica-b")))
        key, key_id = await create_key(http, replicas[1], rpm=30)
        started = time.monotonic()
        answers = await burst(http, replicas, 100, key, "rpm")
        took = max(a.at for a in answers) - started
        exits = await asyncio.gather(*(replica.stop() for replica in replicas))
    rows = await postgres_rows(postgres_dsn)

    statuses = Counter(a.status for a in answers)
    by_gateway = sorted(Counter((a.gateway, a.status) for a in answers).items())
    print(f"rpm: burst decided in {took:.2f} s; {by_gateway}")
    assert statuses == {200: 30, 429: 70}, (statuses, f"burst took {took:.2f} s")
    refused = [a for a in answers if a.status == 429]
    assert {a.code for a in refused} == {"rate_limit_exceeded"}
    assert all(a.retry_after is not None and int(a.retry_after) >= 1 for a in refused)
    assert {a.gateway for a in refused} == {"replica-a", "replica-b"}
    assert exits == [0, 0]
    assert_no_unchecked_admissions(replicas)
    assert Counter((row[1], row[2], row[3]) for row in rows) == {
        (key_id, 200, None): 30,
        (key_id, 429, "rate_limit_exceeded"): 70,
    }


FLUSH_S = 0.2
# How much later than its flush window a queued record may still be committed: the commit
# itself, and the writer thread getting the CPU and the GIL late on a loaded machine (observed
# on 2 saturated cores: answers lost up to ~200 ms before the kill; before commits used
# multi-row INSERTs, one GIL hand-off per row made them take up to ~0.9 s under this load).
COMMIT_MARGIN_S = 0.2
OLD_ANSWERS = 300  # answers older than the window at the kill: the bound then says something


async def test_kill_9_loses_at_most_the_last_group_commit_window(
    serve: StartServe, tmp_path: Path
) -> None:
    """SIGKILL a gateway (SQLite ledger, ``flushMs: 200``) under load, then read the file.

    Why the bound holds: a gateway queues a request's record before it sends the answer, and
    its writer thread commits everything queued at least every ``flushMs`` (plus the commit's
    own time); a committed group is in the WAL file, which survives SIGKILL. So a record can
    be lost only if it was queued after the last commit began, less than ``flushMs`` + commit
    time before the kill.

    Asserted: every request whose 200 answer the client read before ``kill_time - flushMs -
    COMMIT_MARGIN_S`` has its record in the file (checked by request id); so records present
    >= 200 answers read before the kill - answers read in that last window. The file passes
    ``PRAGMA integrity_check`` and holds no record of a request never sent. Not asserted:
    anything about requests in flight at the kill (the contract loses them too). The kill
    comes once at least 300 answers are older than the window, so the bound covers most of
    the load.
    """
    concurrency, max_requests, load_s = 16, 2000, 10.0
    window_s = FLUSH_S + COMMIT_MARGIN_S
    store = tmp_path / "ledger.db"
    async with FakeUpstream("main") as upstream, client_session() as http, asyncio.timeout(40):
        ledger = {"store": f"sqlite:///{store}", "flushMs": int(FLUSH_S * 1000)}
        gateway = await serve(write_spec(tmp_path, upstream, keys="off", ledger=ledger), "gateway")
        body = chat_body()
        answered: dict[str, float] = {}  # request id -> when its 200 answer was read
        sent: list[str] = []
        killed = asyncio.Event()
        deadline = time.monotonic() + load_s

        async def client() -> None:
            while not killed.is_set() and time.monotonic() < deadline:
                if len(sent) >= max_requests:
                    return
                request_id = f"load-{len(sent)}"
                sent.append(request_id)
                try:
                    answer = await post_chat(http, gateway, body, request_id)
                except aiohttp.ClientError:
                    if killed.is_set():  # the kill cut it off
                        return
                    raise
                if answer.status == 200:
                    answered[request_id] = answer.at

        def enough_old_answers() -> bool:
            cutoff = time.monotonic() - window_s
            return sum(at < cutoff for at in answered.values()) >= OLD_ANSWERS

        clients = [asyncio.create_task(client()) for _ in range(concurrency)]
        try:
            await eventually(enough_old_answers, timeout_s=load_s, what="answers to lose")
            kill_at = time.monotonic()
            gateway.proc.kill()
            killed.set()  # no await between the kill and this: every later error is the kill's
        finally:
            killed.set()
            await asyncio.gather(*clients, return_exceptions=True)
        assert await gateway.wait() == -signal.SIGKILL
    rows = await asyncio.to_thread(sqlite_rows, store)

    in_ledger = {request_id for request_id, _ in rows}
    old = {request_id for request_id, at in answered.items() if at < kill_at - window_s}
    recent = len(answered) - len(old)
    lost = set(answered) - in_ledger
    oldest_lost_ms = max((kill_at - answered[r] for r in lost), default=0.0) * 1000
    print(
        f"kill -9: {len(sent)} sent, {len(answered)} answered 200, {len(rows)} records; "
        f"{len(lost)} answered but lost, {recent} answered in the last {window_s:.1f} s; "
        f"oldest lost answer read {oldest_lost_ms:.0f} ms before the kill"
    )
    assert old - in_ledger == set(), f"lost answers older than {window_s} s before the kill"
    assert len(rows) >= len(answered) - recent
    assert in_ledger <= set(sent)
    assert len(old) >= OLD_ANSWERS


async def test_sigterm_writes_every_queued_record(serve: StartServe, tmp_path: Path) -> None:
    """With a 10 s group-commit window nothing is written while 100 requests are answered;
    SIGTERM then writes all 100 records before the process exits 0."""
    store = tmp_path / "ledger.db"
    async with FakeUpstream("main") as upstream, client_session() as http, asyncio.timeout(40):
        ledger = {"store": f"sqlite:///{store}", "flushMs": 10_000}
        gateway = await serve(write_spec(tmp_path, upstream, keys="off", ledger=ledger), "gateway")
        body = chat_body()
        answers = await asyncio.gather(
            *(post_chat(http, gateway, body, f"term-{n}") for n in range(100))
        )
        assert {a.status for a in answers} == {200}
        before = await asyncio.to_thread(sqlite_rows, store)
        assert await gateway.stop(signal.SIGTERM) == 0
    rows = await asyncio.to_thread(sqlite_rows, store)

    assert before == [], "written before SIGTERM: the test no longer shows what SIGTERM does"
    assert sorted(request_id for request_id, _ in rows) == sorted(a.request_id for a in answers)
    assert {status for _, status in rows} == {200}
    assert "stopped" in gateway.log_text()
