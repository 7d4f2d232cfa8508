"""Fixtures for the gateway's integration tests: fake upstreams and a running gateway.

- ``upstreams`` starts ``FakeUpstream`` servers: ``a, b = await upstreams("a", "b")``.
- ``gateway`` starts the gateway in-process on a free port from a fleet spec's YAML text:
  ``gw = await gateway(fleet_yaml([tier("a", a)]))``; see :class:`tests.gateway.helpers.Gateway`.
- ``log_secrets`` captures every log record of the test, at every level, and fails the test
  if one holds a secret: the fleet's master key and upstream keys, the client ``API_KEY`` and
  the AWS secrets in the environment of every gateway started, and whatever the test adds
  (``log_secrets.add(key)``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import aiohttp
import openai
import pytest
from aiohttp import web

from tests.gateway.helpers import API_KEY, Gateway, LogSecrets, build_fleet
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


_AWS_SECRETS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


@pytest.fixture
def log_secrets() -> Iterator[LogSecrets]:
    guard = LogSecrets()
    root = logging.getLogger()
    # botocore's debug log prints canonical requests, session token included: tiergate's
    # logging (tiergate.cli.logs.setup) holds it at INFO, and so does this fixture.
    botocore = logging.getLogger("botocore")
    levels = root.level, botocore.level
    root.addHandler(guard)
    root.setLevel(logging.DEBUG)
    botocore.setLevel(logging.INFO)
    try:
        yield guard
    finally:
        root.removeHandler(guard)
        root.setLevel(levels[0])
        botocore.setLevel(levels[1])
    guard.check()


@pytest.fixture
async def gateway(log_secrets: LogSecrets) -> AsyncIterator[Callable[[str], Awaitable[Gateway]]]:
    from tiergate.gateway.app import create_app  # noqa: PLC0415 - may not exist when collected
    from tiergate.gateway.protocol import GatewayRunner  # noqa: PLC0415 - as above

    runners: list[web.AppRunner] = []
    closers: list[Callable[[], Awaitable[None]]] = []

    async def start(text: str) -> Gateway:
        fleet = build_fleet(text)
        log_secrets.add(API_KEY, *(t.api_key for t in fleet.tiers if t.api_key))
        if fleet.governance is not None and fleet.governance.master_key:
            log_secrets.add(fleet.governance.master_key)
        # The AWS credentials a Bedrock tier signs with, when the test set them.
        log_secrets.add(*(os.environ.get(name, "") for name in _AWS_SECRETS))
        app = create_app(fleet)
        runner = GatewayRunner(app)
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
