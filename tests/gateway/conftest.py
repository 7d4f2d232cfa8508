"""Fixtures for the gateway's integration tests: fake upstreams and a running gateway.

- ``upstreams`` starts ``FakeUpstream`` servers: ``a, b = await upstreams("a", "b")``.
- ``gateway`` starts the gateway in-process on a free port from a fleet spec's YAML text:
  ``gw = await gateway(fleet_yaml([tier("a", a)]))``; see :class:`tests.gateway.helpers.Gateway`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import openai
import pytest
from aiohttp import web

from tests.gateway.helpers import API_KEY, Gateway, build_fleet
from tests.gateway.upstream import FakeUpstream


@pytest.fixture
async def upstreams() -> AsyncIterator[Callable[..., Awaitable[list[FakeUpstream]]]]:
    started: list[FakeUpstream] = []

    async def start(*names: str) -> list[FakeUpstream]:
        ups = [await FakeUpstream(name).start() for name in names]
        started.extend(ups)
        return ups

    yield start
    for up in started:
        await up.close()


@pytest.fixture
async def gateway() -> AsyncIterator[Callable[[str], Awaitable[Gateway]]]:
    from tiergate.gateway.app import create_app  # noqa: PLC0415 - may not exist when collected

    runners: list[web.AppRunner] = []
    closers: list[Callable[[], Awaitable[None]]] = []

    async def start(text: str) -> Gateway:
        fleet = build_fleet(text)
        app = create_app(fleet)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        url = f"http://127.0.0.1:{port}"
        client = openai.AsyncOpenAI(
            base_url=f"{url}/v1", api_key=API_KEY, max_retries=0, timeout=10
        )
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        closers.extend([client.close, http.close])
        return Gateway(url, client, http, fleet, app)

    yield start
    for close in closers:
        await close()
    for runner in runners:
        await runner.cleanup()


# One-handler upstreams (tests/gateway/tiny.py), for answers FakeUpstream has no knob for.
from tests.gateway.tiny import tiny_upstream  # noqa: E402, F401

# The Bedrock tests of the gateway run against fake Bedrock Runtime servers.
from tests.providers.bedrock.conftest import fake_bedrock  # noqa: E402, F401
