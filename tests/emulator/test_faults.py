"""Injected faults, as a client sees them: errors, latency, stalls, resets, crashes, health,
cold start; set at start or through ``/admin``."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import openai
import pytest

from tests.emulator.conftest import MODEL, Emulate
from tests.polling import eventually
from tiergate.emulator import Faults, parse_faults

HELLO = [{"role": "user", "content": "hello"}]


def test_faults_parse_from_the_command_line_form() -> None:
    faults = parse_faults(
        "error_rate=0.2, error_status=429,added_latency_ms=50,stall_after_tokens=none"
    )
    assert faults == Faults(error_rate=0.2, error_status=429, added_latency_ms=50)
    assert parse_faults("") == Faults()
    for bad in ("error_rate", "error_rate=2", "colour=red", "error_status=abc"):
        with pytest.raises(ValueError):  # noqa: PT011 - pydantic's ValidationError is a ValueError
            parse_faults(bad)


async def test_error_rate_fails_that_share_of_requests(emulate: Emulate) -> None:
    running = await emulate(faults=Faults(error_rate=0.3, error_status=503))
    statuses = [(await running.chat(max_tokens=1))[0] for _ in range(200)]
    failed = statuses.count(503)
    assert set(statuses) == {200, 503}
    assert 30 <= failed <= 90  # 60 expected; far outside 5 standard deviations otherwise
    status, payload = await running.post("/v1/chat/completions", {"model": MODEL})
    if status == 503:
        assert payload["error"]["code"] == 503
    await running.post("/admin/faults", {"error_rate": 1.0})
    with pytest.raises(openai.InternalServerError):
        await running.client.chat.completions.create(model=MODEL, messages=HELLO)  # type: ignore[arg-type]


async def test_added_latency_delays_every_answer(emulate: Emulate) -> None:
    running = await emulate()
    status, faults = await running.post("/admin/faults", {"added_latency_ms": 150})
    assert status == 200
    assert faults["added_latency_ms"] == 150
    started = time.monotonic()
    assert (await running.chat(max_tokens=1))[0] == 200
    assert time.monotonic() - started >= 0.15


async def test_stall_stops_a_stream_after_some_tokens(emulate: Emulate) -> None:
    running = await emulate()
    await running.post("/admin/faults", {"stall_after_tokens": 3})
    stream = await running.client.chat.completions.create(
        model=MODEL,
        messages=HELLO,  # type: ignore[arg-type]
        max_tokens=50,
        stream=True,
    )
    chunks = aiter(stream)
    contents = [(await anext(chunks)).choices[0].delta.content for _ in range(4)]
    assert contents == ["", "the ", "engine ", "emulates "]  # the role chunk, then 3 tokens
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(chunks), timeout=0.5)
    await stream.close()
    # A non-streaming request longer than the stall point never answers.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(running.chat(max_tokens=10), timeout=0.5)
    assert (await running.chat(max_tokens=3))[0] == 200  # shorter: answered


async def test_reset_mid_stream_is_an_error_for_the_openai_client(emulate: Emulate) -> None:
    running = await emulate()
    await running.post("/admin/faults", {"reset_after_tokens": 2})
    stream = await running.client.chat.completions.create(
        model=MODEL,
        messages=HELLO,  # type: ignore[arg-type]
        max_tokens=50,
        stream=True,
    )
    contents = []
    with pytest.raises(openai.APIError):  # noqa: PT012 - the error comes while iterating
        async for chunk in stream:
            contents.append(chunk.choices[0].delta.content)
    assert [c for c in contents if c] == ["the ", "engine "]
    with pytest.raises(aiohttp.ClientError):
        await running.chat(max_tokens=10)  # non-streaming: dropped without an answer


async def test_failing_health_and_heal(emulate: Emulate) -> None:
    running = await emulate(faults=Faults(health_status=500, error_rate=1.0))
    assert (await running.get("/health"))[0] == 500
    status, faults = await running.get("/admin/faults")
    assert status == 200
    assert '"health_status":500' in faults
    status, _ = await running.post("/admin/faults", {"health_status": "sick"})
    assert status == 400
    status, _ = await running.post("/admin/faults", {"no_such_fault": 1})
    assert status == 400
    status, healed = await running.post("/admin/heal")
    assert healed == Faults().model_dump()
    assert (await running.get("/health"))[0] == 200
    assert (await running.chat())[0] == 200


async def test_crash_drops_everything_and_restart_comes_back_cold(emulate: Emulate) -> None:
    running = await emulate(speed=100.0)
    replica = running.cluster.replicas[0]
    assert (await running.chat(max_tokens=5))[0] == 200
    stream = await running.client.chat.completions.create(
        model=MODEL,
        messages=HELLO,  # type: ignore[arg-type]
        max_tokens=100_000,
        stream=True,
    )
    await anext(aiter(stream))
    # The crash order is answered, then the replica is gone: streams cut, connections refused.
    status, order = await running.post("/admin/crash", {"restart_after_s": 0.5})
    assert status == 200
    assert order["restart_after_s"] == 0.5
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass
    await eventually(lambda: not replica.up, what="the replica down")
    with pytest.raises(openai.APIConnectionError):
        await running.client.chat.completions.create(model=MODEL, messages=HELLO)  # type: ignore[arg-type]
    # Back on the same port, loading (cold: 34.6 model seconds at speed 100), then ready.
    await eventually(lambda: replica.up, what="the restart")
    assert replica.restarts == 1
    await eventually(lambda: replica.ready, what="the end of the cold start")
    assert (await running.get("/health"))[0] == 200
    assert await running.metric("vllm:generation_tokens_total") == 0  # a fresh process
    assert (await running.chat(max_tokens=5))[0] == 200


async def test_crash_without_restart_stays_down(emulate: Emulate) -> None:
    running = await emulate()
    replica = running.cluster.replicas[0]
    await replica.crash()
    assert not replica.up
    with pytest.raises(aiohttp.ClientConnectionError):
        await running.get("/health")


async def test_cold_start_refuses_requests_until_loaded(emulate: Emulate) -> None:
    # Llama-3.1-8B from NVMe: 30 s of engine init plus 16 GB at 3.5 GB/s = 34.6 model s.
    running = await emulate(cold_start=True, speed=100.0)
    replica = running.cluster.replicas[0]
    assert (await running.get("/health"))[0] == 503
    status, payload = await running.chat()
    assert status == 503
    assert "loading" in payload["error"]["message"]
    assert (await running.get("/metrics"))[0] == 200
    await eventually(lambda: replica.ready, what="the end of the cold start")
    assert (await running.get("/health"))[0] == 200
    assert (await running.chat())[0] == 200
