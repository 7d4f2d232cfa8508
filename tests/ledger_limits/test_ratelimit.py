"""Rate limits as token buckets: in process and shared through a real Redis.

Both limiters run the same behavioural tests; time is virtual (the ``now`` argument) except
where a test says otherwise.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.services import RedisServer, free_port, optional_module, start_redis
from tiergate.ledger.ratelimit import (
    Admission,
    Limit,
    LimiterUnavailableError,
    LocalRateLimiter,
    RateLimiter,
    RedisRateLimiter,
)

aioredis = optional_module("redis.asyncio", extra="redis")

T0 = 1_750_000_000.0  # a wall-clock time, as the gateway passes time.time()
KEY = Limit("key:tk_ab12", rpm=60)


def about(seconds: float) -> object:
    """retry_after_s is rounded up to the microsecond, plus one."""
    return pytest.approx(seconds, abs=3e-6)


@pytest.fixture(params=["local", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    made: RateLimiter
    if request.param == "local":
        made = LocalRateLimiter()
    else:
        made = RedisRateLimiter.from_url(request.getfixturevalue("redis_url"))
    yield made
    await made.aclose()


async def admitted(limiter: RateLimiter, limits: list[Limit], count: int, now: float) -> int:
    results = [await limiter.admit(limits, 0, now) for _ in range(count)]
    return sum(result.allowed for result in results)


async def test_rpm_admits_a_minute_then_one_per_refill(limiter: RateLimiter) -> None:
    assert await admitted(limiter, [KEY], 60, T0) == 60
    refused = await limiter.admit([KEY], 0, T0)
    assert refused == Admission(False, about(1.0), "key:tk_ab12/rpm")
    assert not (await limiter.admit([KEY], 0, T0 + 0.999)).allowed
    assert (await limiter.admit([KEY], 0, T0 + 1.0)).allowed
    assert not (await limiter.admit([KEY], 0, T0 + 1.0)).allowed
    # A quiet minute refills the bucket to its capacity, no more.
    assert await admitted(limiter, [KEY], 61, T0 + 1000) == 60


async def test_waiting_retry_after_is_always_enough(limiter: RateLimiter) -> None:
    odd = Limit("key:tk_odd", rpm=7)  # 60/7 s per request: not exact in binary
    assert await admitted(limiter, [odd], 7, T0) == 7
    now = T0
    for _ in range(20):
        refused = await limiter.admit([odd], 0, now)
        assert not refused.allowed
        assert refused.retry_after_s == about(60 / 7)
        now += refused.retry_after_s
        assert (await limiter.admit([odd], 0, now)).allowed


async def test_tpm_charges_the_estimate_and_settles_the_actual_count(
    limiter: RateLimiter,
) -> None:
    team = [Limit("team:ml", tpm=1000)]
    assert (await limiter.admit(team, 600, T0)).allowed
    refused = await limiter.admit(team, 600, T0)
    assert refused == Admission(False, about(12.0), "team:ml/tpm")  # 200 short
    await limiter.adjust(team, -400, T0)  # the answer used 200 tokens, not 600
    assert (await limiter.admit(team, 600, T0)).allowed  # 800 were left
    await limiter.adjust(team, 500, T0)  # 500 more than estimated: 300 in debt
    refused = await limiter.admit(team, 1, T0)
    assert refused == Admission(False, about(301 * 60 / 1000), "team:ml/tpm")
    assert (await limiter.admit(team, 1, T0 + refused.retry_after_s)).allowed
    # A refund never fills a bucket beyond its capacity.
    await limiter.adjust(team, -10_000, T0 + 60)
    assert (await limiter.admit(team, 1000, T0 + 60)).allowed
    assert not (await limiter.admit(team, 1, T0 + 60)).allowed


async def test_an_estimate_above_the_tpm_is_never_admitted(limiter: RateLimiter) -> None:
    limits = [Limit("key:tk_big", rpm=1, tpm=100)]
    refused = await limiter.admit(limits, 101, T0)
    assert refused == Admission(False, math.inf, "key:tk_big/tpm")
    assert (await limiter.admit(limits, 100, T0)).allowed  # the rpm bucket was not charged


async def test_admission_is_all_or_nothing_across_key_and_team(limiter: RateLimiter) -> None:
    team = Limit("team:ml", rpm=5)
    alice, bob, carol = (Limit(f"key:tk_{name}", rpm=2) for name in ("alice", "bob", "carol"))
    assert await admitted(limiter, [alice, team], 2, T0) == 2
    refused = await limiter.admit([alice, team], 0, T0)
    assert refused.limit == "key:tk_alice/rpm"
    # Alice's refused request took nothing from the team: 3 left for Bob and Carol.
    assert await admitted(limiter, [bob, team], 2, T0) == 2
    assert await admitted(limiter, [carol, team], 1, T0) == 1
    refused = await limiter.admit([carol, team], 0, T0)
    assert refused == Admission(False, about(12.0), "team:ml/rpm")
    # ...and the team's refusal took nothing from Carol's key: her second request fits later.
    assert (await limiter.admit([carol, team], 0, T0 + 12)).allowed


async def test_refusal_names_the_longest_wait(limiter: RateLimiter) -> None:
    key, team = Limit("key:tk_ab12", rpm=60), Limit("team:ml", tpm=600)
    assert (await limiter.admit([key, team], 600, T0)).allowed
    assert await admitted(limiter, [key], 59, T0) == 59
    refused = await limiter.admit([key, team], 300, T0)  # key: 1 s away, team: 30 s away
    assert refused == Admission(False, about(30.0), "team:ml/tpm")


async def test_a_clock_behind_gets_no_refill(limiter: RateLimiter) -> None:
    assert await admitted(limiter, [KEY], 60, T0) == 60
    assert not (await limiter.admit([KEY], 0, T0 - 5)).allowed  # a replica 5 s behind
    assert (await limiter.admit([KEY], 0, T0 + 1)).allowed
    assert not (await limiter.admit([KEY], 0, T0 + 1)).allowed


async def test_zero_limit_admits_nothing(limiter: RateLimiter) -> None:
    blocked = [Limit("key:tk_off", rpm=0)]
    assert await limiter.admit(blocked, 0, T0) == Admission(False, math.inf, "key:tk_off/rpm")
    no_tokens = [Limit("key:tk_dry", rpm=10, tpm=0)]
    await limiter.adjust(no_tokens, 5, T0)
    assert await limiter.admit(no_tokens, 0, T0) == Admission(False, math.inf, "key:tk_dry/tpm")


async def test_bad_arguments_are_refused(limiter: RateLimiter) -> None:
    with pytest.raises(ValueError, match="one scope twice"):
        await limiter.admit([KEY, KEY], 0, T0)
    with pytest.raises(ValueError, match="token estimate"):
        await limiter.admit([KEY], -1, T0)
    with pytest.raises(ValueError, match="rpm must be >= 0"):
        Limit("key:tk_ab12", rpm=-1)


# --- Redis only -----------------------------------------------------------------------------


async def test_two_replicas_share_one_bucket(redis_url: str) -> None:
    replicas = [RedisRateLimiter.from_url(redis_url) for _ in range(2)]
    try:
        limits = [Limit("key:tk_shared", rpm=30)]
        results = await asyncio.gather(
            *(replicas[i % 2].admit(limits, 0, T0 + i * 1e-6) for i in range(100))
        )
        assert sum(result.allowed for result in results) == 30
        assert {result.limit for result in results if not result.allowed} == {"key:tk_shared/rpm"}
    finally:
        for replica in replicas:
            await replica.aclose()


async def test_buckets_expire_when_idle(redis_url: str) -> None:
    limiter = RedisRateLimiter.from_url(redis_url)
    client = aioredis.from_url(redis_url)
    try:
        team = [Limit("team:ml", rpm=60, tpm=1000)]
        assert (await limiter.admit(team, 500, T0)).allowed
        assert 0 < await client.pttl("tiergate:rl:team:ml/rpm") <= 1000 + 1000
        assert 30_000 < await client.pttl("tiergate:rl:team:ml/tpm") <= 30_000 + 1000
        await limiter.adjust(team, 1000, T0)  # 500 in debt: 90 s until full again
        assert 60_000 < await client.pttl("tiergate:rl:team:ml/tpm") <= 90_000 + 1000
    finally:
        await client.aclose()
        await limiter.aclose()


async def test_a_redis_without_the_script_gets_it_sent(redis_url: str) -> None:
    limiter = RedisRateLimiter.from_url(redis_url)
    client = aioredis.from_url(redis_url)
    try:
        limits = [Limit("key:tk_ab12", rpm=3)]
        assert await admitted(limiter, limits, 2, T0) == 2
        await client.script_flush()  # as after a Redis restart or failover
        assert await admitted(limiter, limits, 2, T0) == 1
    finally:
        await client.aclose()
        await limiter.aclose()


async def test_unreachable_redis_raises_limiter_unavailable() -> None:
    limiter = RedisRateLimiter.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5)
    try:
        with pytest.raises(LimiterUnavailableError):
            await limiter.admit([KEY], 0, T0)
        with pytest.raises(LimiterUnavailableError):
            await limiter.adjust([Limit("team:ml", tpm=10)], 5, T0)
    finally:
        await limiter.aclose()


async def test_redis_going_down_raises_limiter_unavailable() -> None:
    server: RedisServer = start_redis()  # our own: this test stops it
    limiter = RedisRateLimiter.from_url(server.url(), timeout_s=0.5)
    try:
        assert (await limiter.admit([KEY], 0, T0)).allowed
        server.stop()
        with pytest.raises(LimiterUnavailableError, match="redis"):
            await asyncio.wait_for(limiter.admit([KEY], 0, T0), timeout=5)
    finally:
        await limiter.aclose()
        server.stop()


# --- properties -----------------------------------------------------------------------------

steps = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=5, allow_nan=False),  # seconds since the last step
        st.booleans(),  # admit (True) or settle an earlier estimate (False)
        st.integers(min_value=0, max_value=400),  # token estimate
        st.integers(min_value=-300, max_value=300),  # tokens delta
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(
    rpm=st.integers(min_value=0, max_value=120),
    tpm=st.integers(min_value=0, max_value=2000),
    steps=steps,
)
def test_local_never_admits_more_than_capacity_plus_refill(
    rpm: int, tpm: int, steps: list[tuple[float, bool, int, int]]
) -> None:
    """Over every window of the sequence: used <= capacity + refill during the window."""

    async def run() -> list[tuple[float, int, int, bool]]:
        limiter = LocalRateLimiter()
        limits = [Limit("key:tk_p", rpm=rpm, tpm=tpm)]
        now, events = T0, []  # (time, requests, tokens, admission?)
        for dt, admit, tokens, delta in steps:
            now += dt
            if admit:
                if (await limiter.admit(limits, tokens, now)).allowed:
                    events.append((now, 1, tokens, True))
            else:
                await limiter.adjust(limits, delta, now)
                events.append((now, 0, delta, False))
        return events

    events = asyncio.run(run())
    for start in range(len(events)):
        requests = tokens = 0
        for end in range(start, len(events)):
            at, request_count, token_count, is_admission = events[end]
            requests += request_count
            tokens += token_count
            elapsed = at - events[start][0]
            if is_admission:
                assert requests <= rpm + rpm / 60 * elapsed + 1e-6
                assert tokens <= tpm + tpm / 60 * elapsed + 1e-6


@settings(max_examples=40, deadline=None)
@given(
    rpm=st.integers(min_value=0, max_value=30),
    tpm=st.integers(min_value=0, max_value=2000),
    steps=steps,
)
def test_redis_decides_exactly_as_local(
    redis_server: RedisServer, rpm: int, tpm: int, steps: list[tuple[float, bool, int, int]]
) -> None:
    """The Lua script is the same arithmetic as LocalRateLimiter: same answers, same waits."""

    async def run() -> None:
        local = LocalRateLimiter()
        shared = RedisRateLimiter.from_url(redis_server.url(), prefix=f"{uuid.uuid4().hex}:")
        try:
            limits = [Limit("key:tk_p", rpm=rpm), Limit("team:ml", rpm=rpm * 2, tpm=tpm)]
            now = T0
            for dt, admit, tokens, delta in steps:
                now += dt
                if admit:
                    expected = await local.admit(limits, tokens, now)
                    got = await shared.admit(limits, tokens, now)
                    assert got.allowed == expected.allowed
                    assert got.limit == expected.limit
                    assert got.retry_after_s == pytest.approx(expected.retry_after_s, rel=1e-12)
                else:
                    await local.adjust(limits, delta, now)
                    await shared.adjust(limits, delta, now)
        finally:
            await shared.aclose()

    asyncio.run(run())
