"""Bad requests: OpenAI-shaped errors from the gateway itself, and no upstream ever sees them."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.gateway.helpers import (
    CHAT,
    HELLO,
    Gateway,
    StartGateway,
    StartUpstreams,
    fleet_yaml,
    tier,
)
from tests.gateway.upstream import FakeUpstream

COMPLETIONS = "/v1/completions"
EMBEDDINGS = "/v1/embeddings"


@pytest.fixture
async def one_tier(
    upstreams: StartUpstreams, gateway: StartGateway
) -> tuple[Gateway, FakeUpstream]:
    (a,) = await upstreams("a")
    gw = await gateway(fleet_yaml([tier("a", a)], gateway={"maxBodyBytes": 4096}))
    return gw, a


def assert_openai_error(payload: Any, *, param: str | None = None) -> dict[str, Any]:
    assert isinstance(payload, dict)
    error = payload["error"]
    assert {"message", "type", "param", "code"} <= set(error)
    assert isinstance(error["message"], str)
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    return error


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b'{"model": "a", "messages": [', b"", b"\xff\xfe"],
    ids=["garbage", "truncated", "empty", "not-utf8"],
)
async def test_malformed_json_is_400(one_tier: tuple[Gateway, FakeUpstream], raw: bytes) -> None:
    gw, a = one_tier

    status, _, payload = await gw.post(CHAT, data=raw, headers={"Content-Type": "application/json"})

    assert status == 400
    assert assert_openai_error(payload)["type"] == "invalid_request_error"
    assert a.requests == []


@pytest.mark.parametrize("body", [[1, 2], "a string", 3, None], ids=repr)
async def test_json_body_that_is_not_an_object_is_400(
    one_tier: tuple[Gateway, FakeUpstream], body: Any
) -> None:
    gw, a = one_tier

    status, _, payload = await gw.post(
        CHAT, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )

    assert status == 400
    assert assert_openai_error(payload)["type"] == "invalid_request_error"
    assert a.requests == []


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        (CHAT, {"messages": HELLO}, "model"),
        (COMPLETIONS, {"prompt": "hi"}, "model"),
        (EMBEDDINGS, {"input": "hi"}, "model"),
        (CHAT, {"model": "a"}, "messages"),
        (CHAT, {"model": "a", "messages": "hello"}, "messages"),
        (CHAT, {"model": "a", "messages": {"role": "user"}}, "messages"),
        (COMPLETIONS, {"model": "a"}, "prompt"),
        (EMBEDDINGS, {"model": "a"}, "input"),
        (CHAT, {"model": "a", "messages": HELLO, "stream": "yes"}, "stream"),
        (CHAT, {"model": "a", "messages": HELLO, "stream": 1}, "stream"),
        (COMPLETIONS, {"model": "a", "prompt": "hi", "stream": "true"}, "stream"),
    ],
    ids=[
        "chat-no-model",
        "completions-no-model",
        "embeddings-no-model",
        "chat-no-messages",
        "chat-messages-string",
        "chat-messages-object",
        "completions-no-prompt",
        "embeddings-no-input",
        "stream-string",
        "stream-int",
        "completions-stream-string",
    ],
)
async def test_invalid_request_is_400_naming_the_field(
    one_tier: tuple[Gateway, FakeUpstream], path: str, body: dict[str, Any], param: str
) -> None:
    gw, a = one_tier

    status, _, payload = await gw.post(path, body)

    assert status == 400
    error = assert_openai_error(payload, param=param)
    assert error["type"] == "invalid_request_error"
    assert a.requests == []


async def test_openai_client_sees_bad_request_error(
    one_tier: tuple[Gateway, FakeUpstream],
) -> None:
    gw, a = one_tier

    with pytest.raises(openai.BadRequestError) as caught:
        await gw.client.chat.completions.create(model="a", messages="hello")  # type: ignore[arg-type]

    assert caught.value.param == "messages"
    assert a.requests == []


async def test_body_over_limit_is_413(one_tier: tuple[Gateway, FakeUpstream]) -> None:
    gw, a = one_tier

    big = [{"role": "user", "content": "x" * 8000}]
    status, _, payload = await gw.post(CHAT, {"model": "a", "messages": big})

    assert status == 413
    assert assert_openai_error(payload)["code"] == "request_too_large"
    assert a.requests == []

    # A body under the limit goes through.
    small = [{"role": "user", "content": "x" * 1000}]
    status, _, _ = await gw.post(CHAT, {"model": "a", "messages": small})
    assert status == 200


async def test_unknown_model_is_404_and_reaches_no_upstream(
    one_tier: tuple[Gateway, FakeUpstream],
) -> None:
    gw, a = one_tier

    for path, body in [
        (CHAT, {"model": "gpt-nope", "messages": HELLO}),
        (COMPLETIONS, {"model": "gpt-nope", "prompt": "hi"}),
        (EMBEDDINGS, {"model": "gpt-nope", "input": "hi"}),
    ]:
        status, _, payload = await gw.post(path, body)
        assert status == 404, path
        error = assert_openai_error(payload)
        assert error["code"] == "model_not_found"
        assert "a" in error["message"]
    assert a.requests == []


async def test_error_responses_carry_request_id_and_attempt_count(
    one_tier: tuple[Gateway, FakeUpstream],
) -> None:
    gw, _ = one_tier

    for body in [{"model": "gpt-nope", "messages": HELLO}, {"model": "a"}]:
        status, headers, _ = await gw.post(CHAT, body, headers={"x-request-id": "req-err-1"})
        assert status in (400, 404)
        assert headers.get("x-request-id") == "req-err-1", body
        assert headers.get("x-tiergate-attempts") == "0", body
        assert "x-tiergate-tier" not in headers, body
