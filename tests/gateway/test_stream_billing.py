"""A stream that ends early is billed for what the upstream generated, on the served server.

The gateway runs as ``tiergate serve`` runs it (``start_site``: a client that goes away
cancels its handler), with the SQLite ledger on; records are read back from the ledger.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.gateway.helpers import (
    CHAT,
    HELLO,
    StartUpstreams,
    build_fleet,
    eventually,
    metric,
    tier,
)
from tests.gateway.test_governance import PRICE, governed, ledger
from tiergate.gateway.app import create_app
from tiergate.gateway.server import start_site

Serve = Callable[[str], Awaitable[str]]


@pytest.fixture
async def served() -> AsyncIterator[Serve]:
    """Start the gateway on the production server setup; returns its origin."""
    runners: list[web.AppRunner] = []

    async def start(text: str) -> str:
        runner = await start_site(create_app(build_fleet(text)), "127.0.0.1", 0, drain_s=1)
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def read_then_leave(url: str, body: dict[str, object], events: int) -> list[bytes]:
    """Stream from the gateway, read ``events`` content events, then hang up."""
    seen: list[bytes] = []
    async with aiohttp.ClientSession() as http:
        response = await http.post(url + CHAT, json=body)
        assert response.status == 200
        async for line in response.content:
            if line.startswith(b"data: {") and b'"content": "from' in line:
                seen.append(line)
                if len(seen) == events:
                    break
        response.close()  # drops the connection mid-stream
    return seen


async def test_a_stream_the_client_abandons_is_billed_for_what_was_generated(
    upstreams: StartUpstreams, served: Serve, tmp_path: Path
) -> None:
    (a,) = await upstreams("a")
    a.set(chunks=200, chunk_delay_s=0.02)  # 4 s if left to run: no usage chunk before then
    store = tmp_path / "ledger.db"
    url = await served(governed([tier("a", a, pricing=PRICE)], store))

    seen = await read_then_leave(url, {"model": "a", "messages": HELLO, "stream": True}, 3)

    assert len(seen) == 3
    (record,) = await ledger(store, 1)
    assert (record.tier, record.status, record.error) == ("a", 499, "client_closed")
    assert record.output_tokens >= 3  # at least one token per content event relayed
    assert record.input_tokens > 0
    assert record.cost_usd > 0
    await eventually(lambda: a.cancelled_streams == 1, what="the upstream stream cancelled")
    assert a.completed_streams == 0
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as response:
        text = await response.text()
    assert metric(text, "tiergate_requests_total", tier="a", status="499") == 1
    assert metric(text, "tiergate_tokens_total", direction="output", tier="a") >= 3


async def test_a_stream_the_upstream_breaks_is_billed_for_what_was_relayed(
    upstreams: StartUpstreams, served: Serve, tmp_path: Path
) -> None:
    (a,) = await upstreams("a")
    a.set(reset_after_chunks=4)  # the role chunk and 3 content chunks, then a dropped connection
    store = tmp_path / "ledger.db"
    url = await served(governed([tier("a", a, pricing=PRICE)], store))

    seen = await read_then_leave(url, {"model": "a", "messages": HELLO, "stream": True}, 5)

    assert len(seen) == 3
    (record,) = await ledger(store, 1)
    assert (record.tier, record.error) == ("a", "stream_reset")
    assert record.output_tokens == 3
    assert record.cost_usd > 0


async def test_a_request_the_client_abandons_before_its_answer_is_a_499_not_a_500(
    upstreams: StartUpstreams, served: Serve, tmp_path: Path
) -> None:
    (a,) = await upstreams("a")
    a.stall_s = 5.0  # the answer would come long after the client has gone
    store = tmp_path / "ledger.db"
    url = await served(governed([tier("a", a, pricing=PRICE)], store))

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.3)) as http:
        with pytest.raises(TimeoutError):
            await http.post(url + CHAT, json={"model": "a", "messages": HELLO})

    (record,) = await ledger(store, 1)
    assert (record.status, record.error) == (499, "client_closed")
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as response:
        text = await response.text()
    assert metric(text, "tiergate_requests_total", status="499") == 1
    assert metric(text, "tiergate_requests_total", status="500") == 0
