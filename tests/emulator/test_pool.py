"""The emulated Deployment the scaling loop actuates: cold starts, give-back order, drain,
the replica count it reports to the scaler, and replica-seconds."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.polling import eventually
from tiergate.emulator import EmulatorConfig
from tiergate.emulator.pool import EmulatorPool

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
COLD_S = 0.5  # wall seconds a cold replica takes to get ready (speed 1)


def config() -> EmulatorConfig:
    return EmulatorConfig(MODEL, "H100", cold_start=True, load_time_s=COLD_S)


async def test_cold_replicas_are_pending_with_their_ready_time_then_serve() -> None:
    async with EmulatorPool(config(), "vllm-a") as pool:
        await pool.scale_to(1, cold=False)
        before = time.monotonic()  # the pool's clock
        await pool.scale_to(3)
        after = time.monotonic()
        count = await pool.count("vllm-a", 0.0)
        assert count is not None
        assert (count.ready, count.pending) == (1, 2)
        assert len(count.pending_ready_at) == 2
        assert all(before + COLD_S <= at <= after + COLD_S for at in count.pending_ready_at)
        assert await pool.count("another-deployment", 0.0) is None
        assert len(pool) == 3
        assert len(pool.ready()) == 1

        await eventually(lambda: len(pool.ready()) == 3, timeout_s=5.0, what="cold replicas ready")
        count = await pool.count("vllm-a", 0.0)
        assert count is not None
        assert (count.ready, count.pending, count.pending_ready_at) == (3, 0, ())


async def test_the_caller_clock_maps_ready_times() -> None:
    async with EmulatorPool(config(), "vllm-a", to_caller=lambda at: -at) as pool:
        await pool.scale_to(1)
        count = await pool.count("vllm-a", 0.0)
        assert count is not None
        assert count.pending == 1
        assert count.pending_ready_at[0] < 0


async def test_give_back_takes_starting_replicas_first_then_the_newest() -> None:
    async with EmulatorPool(config(), "vllm-a") as pool:
        await pool.scale_to(2, cold=False)
        serving = pool.ready()
        await pool.scale_to(3)  # a third, still starting
        await pool.scale_to(2)
        assert pool.ready() == serving  # the starting one left, the serving ones stayed
        count = await pool.count("vllm-a", 0.0)
        assert count is not None
        assert (count.ready, count.pending) == (2, 0)
        await pool.scale_to(1)
        assert pool.ready() == serving[:1]


async def test_a_replica_given_back_finishes_its_requests_and_takes_no_new_ones() -> None:
    async with EmulatorPool(config(), "vllm-a") as pool, aiohttp.ClientSession() as http:
        await pool.scale_to(2, cold=False)
        first, second = pool.ready()
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 400}
        async with pool.lease() as replica:
            assert replica is first
            await pool.scale_to(1)  # the newest (second) leaves: not the busy one
        async with pool.lease() as replica:
            assert replica is first

            async def ask() -> int:
                async with http.post(f"{first.url}/chat/completions", json=body) as response:
                    await response.read()
                    return response.status

            request = asyncio.create_task(ask())
            await pool.scale_to(2, cold=False)
            third = pool.ready()[1]
            assert third is not second
            await pool.scale_to(0)  # both leave; the first drains its request
            assert pool.ready() == []
            assert await request == 200
        async with pool.lease() as replica:
            assert replica is None  # nothing ready: the caller counts a failure
        await eventually(lambda: not pool.leaving, timeout_s=10.0, what="drained replicas closed")
        assert not first.up


async def test_replica_seconds_count_every_replica_from_start_to_close() -> None:
    async with EmulatorPool(config(), "vllm-a") as pool:
        await pool.scale_to(2)
        await asyncio.sleep(0.2)
        while_running = pool.replica_seconds()
        assert while_running >= 2 * 0.2
        await pool.scale_to(0)
        await eventually(lambda: not pool.leaving, timeout_s=5.0, what="replicas closed")
        closed = pool.replica_seconds()
        await asyncio.sleep(0.2)
        assert pool.replica_seconds() == closed  # nothing alive: no more seconds
        assert closed >= while_running


async def test_a_negative_count_is_refused() -> None:
    async with EmulatorPool(config(), "vllm-a") as pool:
        with pytest.raises(ValueError, match="replicas must be >= 0"):
            await pool.scale_to(-1)
