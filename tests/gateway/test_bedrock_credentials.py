"""A Bedrock tier whose credentials come from web identity (IRSA, as on EKS), through the gateway.

botocore's standard chain reads ``AWS_WEB_IDENTITY_TOKEN_FILE`` and ``AWS_ROLE_ARN`` and trades
the token with STS (a :class:`FakeSTS` on loopback, reached through ``AWS_ENDPOINT_URL_STS``) for
temporary credentials, which a :class:`FakeBedrock` accepts; the official openai client is in
front. Nothing here reaches a non-loopback address: the environment is emptied of ``AWS_*``
variables, instance metadata is off, and each test checks that botocore's STS endpoint is the
fake before the gateway starts.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.session
import openai
import pytest

from tests.gateway.helpers import (
    HELLO,
    StartGateway,
    StartUpstreams,
    eventually,
    fleet_yaml,
    metric,
    refused_url,
    tier,
)
from tests.providers.bedrock.fake import FakeBedrock
from tests.providers.bedrock.fake_sts import AssumeRoleCall, FakeSTS, Refusal
from tiergate.cli import logs

MODEL = "anthropic.claude-sonnet-4-20250514-v1:0"
REGION = "us-east-1"
ROLE_ARN = "arn:aws:iam::123456789012:role/tiergate-bedrock"
SESSION_NAME = "tiergate-gateway"
# A projected service account token stands in for the JWT the kubelet writes.
TOKEN = "eyJhbGciOiJSUzI1NiJ9.IRSA-PROJECTED-TOKEN-ONE.c2lnbmF0dXJl"
ROTATED_TOKEN = "eyJhbGciOiJSUzI1NiJ9.IRSA-PROJECTED-TOKEN-TWO.c2lnbmF0dXJl"
# botocore refreshes temporary credentials 15 minutes before they expire (advisory: a failed
# refresh keeps the old ones) and must refresh them 10 minutes before (mandatory).
ADVISORY = datetime.timedelta(minutes=12)
MANDATORY = datetime.timedelta(minutes=5)
STS_DELAY_S = 0.5
WAIT_S = 10.0


@dataclass
class Irsa:
    """A pod's web identity: the fake STS, the fake Bedrock accepting what it issues, the token."""

    sts: FakeSTS
    bedrock: FakeBedrock
    token_file: Path


StartIrsa = Callable[..., Awaitable[Irsa]]


@pytest.fixture
async def irsa(
    fake_bedrock: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[StartIrsa]:
    """Start a FakeSTS issuing credentials a FakeBedrock accepts, and point botocore at it."""
    started: list[FakeSTS] = []

    async def start(**sts_options: Any) -> Irsa:
        bedrock: FakeBedrock = await fake_bedrock(region=REGION)
        sts = FakeSTS(on_issue=lambda keys: bedrock.accept(*keys), region=REGION, **sts_options)
        started.append(await sts.start())
        token_file = tmp_path / "eks.amazonaws.com" / "serviceaccount" / "token"
        token_file.parent.mkdir(parents=True)
        token_file.write_text(TOKEN)
        web_identity(monkeypatch, tmp_path, token_file, sts.url)
        assert await asyncio.to_thread(sts_endpoint) == sts.url  # never the real STS
        return Irsa(sts, bedrock, token_file)

    yield start
    for sts in started:
        await sts.close()


def web_identity(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, token_file: Path, sts_url: str
) -> None:
    """The environment of an EKS pod with IRSA, and nothing else of AWS's."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("AWS_ROLE_ARN", ROLE_ARN)
    monkeypatch.setenv("AWS_ROLE_SESSION_NAME", SESSION_NAME)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts_url)


def sts_endpoint() -> str:
    """Where botocore would send STS calls in this environment (blocking: loads a model)."""
    client = botocore.session.Session().create_client("sts", region_name=REGION)
    url: str = client.meta.endpoint_url
    client.close()
    return url


def bedrock(name: str, fake: FakeBedrock) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "bedrock",
        "model": MODEL,
        "region": fake.region,
        "baseUrl": fake.url,
    }


def signed_with(fake: FakeBedrock, index: int) -> tuple[str, str]:
    """The access key and session token request ``index`` to ``fake`` was signed with."""
    headers = fake.requests[index].headers
    access_key = headers["authorization"].split("Credential=", 1)[1].split("/", 1)[0]
    return access_key, headers["x-amz-security-token"]


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Logs captured at DEBUG, set up as ``tiergate serve --log-level debug`` does."""
    with caplog.at_level(logging.DEBUG):
        logs.setup("debug")
        yield caplog
    logging.getLogger("botocore").setLevel(logging.NOTSET)


async def test_web_identity_credentials_sign_bedrock_requests(
    irsa: StartIrsa, gateway: StartGateway
) -> None:
    pod = await irsa()
    gw = await gateway(fleet_yaml([bedrock("claude", pod.bedrock)]))

    completion = await gw.client.chat.completions.create(model="claude", messages=HELLO)
    stream = await gw.client.chat.completions.create(model="claude", messages=HELLO, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert completion.choices[0].message.content == text == "echo: hello"
    # One trade of the token for credentials, reused while they are fresh (an hour here).
    assert pod.sts.calls == [AssumeRoleCall(ROLE_ARN, SESSION_NAME, TOKEN)]
    (issued,) = pod.sts.issued
    assert signed_with(pod.bedrock, 0) == signed_with(pod.bedrock, 1)
    assert signed_with(pod.bedrock, 0) == (issued.access_key, issued.session_token)
    assert issued.access_key.startswith("ASIA")
    assert not pod.bedrock.rejected


@pytest.mark.parametrize("lifetime", [ADVISORY, MANDATORY], ids=["advisory", "mandatory"])
async def test_credentials_near_expiry_are_refreshed_off_the_event_loop(
    irsa: StartIrsa,
    gateway: StartGateway,
    upstreams: StartUpstreams,
    lifetime: datetime.timedelta,
) -> None:
    pod = await irsa(lifetime=lifetime)
    (local,) = await upstreams("local")
    gw = await gateway(fleet_yaml([bedrock("claude", pod.bedrock), tier("local", local)]))
    async with asyncio.timeout(WAIT_S):
        await gw.client.chat.completions.create(model="claude", messages=HELLO)
    assert len(pod.sts.calls) == 1
    # The kubelet rotates the projected token; STS now answers slowly.
    pod.token_file.write_text(ROTATED_TOKEN)
    pod.sts.delay_s = STS_DELAY_S

    refreshing = asyncio.create_task(
        gw.client.chat.completions.create(model="claude", messages=HELLO)
    )
    try:
        await eventually(
            lambda: len(pod.sts.calls) == 2, timeout_s=WAIT_S, what="a second STS call"
        )
        async with asyncio.timeout(WAIT_S):
            other = await gw.client.chat.completions.create(model="local", messages=HELLO)
        # Another tier of the same gateway answered while STS had not: the loop was free.
        assert pod.sts.answered == 1, "STS answered first: the refresh blocked the event loop"
        assert not refreshing.done()
        assert "from local" in (other.choices[0].message.content or "")
        async with asyncio.timeout(WAIT_S):
            second = await refreshing
    finally:
        refreshing.cancel()

    assert second.choices[0].message.content == "echo: hello"
    assert pod.sts.calls[1] == AssumeRoleCall(ROLE_ARN, SESSION_NAME, ROTATED_TOKEN)
    first_keys, new_keys = pod.sts.issued
    assert signed_with(pod.bedrock, 0) == (first_keys.access_key, first_keys.session_token)
    assert signed_with(pod.bedrock, 1) == (new_keys.access_key, new_keys.session_token)
    assert new_keys.session_token != first_keys.session_token
    assert not pod.bedrock.rejected


REFUSALS = [
    Refusal(
        "InvalidIdentityToken", "Couldn't retrieve verification key from your identity provider"
    ),
    Refusal("AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity", 403),
]


@pytest.mark.parametrize("refusal", REFUSALS, ids=lambda r: r.code)
async def test_sts_refusing_the_token_fails_the_tier_and_the_cascade_moves_on(
    irsa: StartIrsa,
    gateway: StartGateway,
    upstreams: StartUpstreams,
    debug_logs: pytest.LogCaptureFixture,
    refusal: Refusal,
) -> None:
    pod = await irsa()
    pod.sts.refusal = refusal
    (backup,) = await upstreams("backup")
    gw = await gateway(fleet_yaml([bedrock("claude", pod.bedrock), tier("backup", backup)]))

    async with asyncio.timeout(WAIT_S):
        raw = await gw.client.chat.completions.with_raw_response.create(
            model="claude", messages=HELLO
        )
    assert raw.headers["x-tiergate-tier"] == "backup"
    metrics = await gw.metrics()
    assert metric(metrics, "tiergate_attempts_total", tier="claude", outcome="credentials") == 1

    # With the backup down too, the client's error lists both attempts, and no token.
    backup.status = 503
    with pytest.raises(openai.APIStatusError) as caught:
        async with asyncio.timeout(WAIT_S):
            await gw.client.chat.completions.create(model="claude", messages=HELLO)
    error = caught.value.body
    assert isinstance(error, dict)
    assert [(a["tier"], a["reason"]) for a in error["attempts"]] == [
        ("claude", "credentials"),
        ("backup", "status"),
    ]
    assert TOKEN not in caught.value.response.text

    # The second request did not ask STS again: a failed lookup is retried after a pause,
    # not on every request (a broken IRSA setup must not hammer STS).
    assert pod.sts.calls == [AssumeRoleCall(ROLE_ARN, SESSION_NAME, TOKEN)]
    assert not pod.bedrock.requests
    assert debug_logs.records  # debug logging was on
    assert TOKEN not in debug_logs.text


async def test_sts_refusing_the_token_never_leaks_it(
    irsa: StartIrsa, gateway: StartGateway, debug_logs: pytest.LogCaptureFixture
) -> None:
    pod = await irsa()
    pod.sts.refusal = REFUSALS[0]
    gw = await gateway(fleet_yaml([bedrock("claude", pod.bedrock)]))

    with pytest.raises(openai.APIStatusError) as caught:
        async with asyncio.timeout(WAIT_S):
            await gw.client.chat.completions.create(model="claude", messages=HELLO)

    assert caught.value.status_code >= 500
    assert TOKEN not in caught.value.response.text
    assert pod.sts.calls == [AssumeRoleCall(ROLE_ARN, SESSION_NAME, TOKEN)]
    assert not pod.bedrock.requests
    assert debug_logs.records
    assert TOKEN not in debug_logs.text


async def test_sts_unreachable_fails_the_tier_and_the_cascade_moves_on(
    irsa: StartIrsa,
    gateway: StartGateway,
    upstreams: StartUpstreams,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pod = await irsa()
    # Nothing listens there; one attempt, not botocore's retries with back-off.
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", refused_url().removesuffix("/v1"))
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    (backup,) = await upstreams("backup")
    gw = await gateway(fleet_yaml([bedrock("claude", pod.bedrock), tier("backup", backup)]))

    async with asyncio.timeout(WAIT_S):
        raw = await gw.client.chat.completions.with_raw_response.create(
            model="claude", messages=HELLO
        )

    assert raw.headers["x-tiergate-tier"] == "backup"
    metrics = await gw.metrics()
    assert metric(metrics, "tiergate_attempts_total", tier="claude", outcome="credentials") == 1
    assert not pod.sts.calls
    assert not pod.bedrock.requests
