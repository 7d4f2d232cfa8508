"""The Bedrock tier through the gateway: the official openai client in front, a fake Bedrock
Runtime behind (SigV4 checked with botocore, bodies checked against botocore's model of the API,
event-stream frames on streams)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from tests.gateway.helpers import HELLO, StartGateway, StartUpstreams, fleet_yaml, metric, tier
from tests.providers.bedrock.fake import (
    Fail,
    FakeBedrock,
    Reply,
    Reset,
    Stall,
    StreamFail,
)
from tiergate.cli import logs

MODEL = "anthropic.claude-sonnet-4-20250514-v1:0"
# No statusCode condition: every Bedrock error reaches the client as mapped.
NO_STATUS_FALLBACK = [{"latencyMs": "> 30000"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    },
}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A clean AWS environment: no profile files, no instance metadata (not loopback)."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


def keys_of(fake: FakeBedrock, aws: pytest.MonkeyPatch) -> None:
    aws.setenv("AWS_ACCESS_KEY_ID", fake.access_key)
    aws.setenv("AWS_SECRET_ACCESS_KEY", fake.secret_key)
    if fake.session_token:
        aws.setenv("AWS_SESSION_TOKEN", fake.session_token)


def bedrock(name: str, fake: FakeBedrock, **keys: Any) -> dict[str, Any]:
    entry = {
        "name": name,
        "provider": "bedrock",
        "model": MODEL,
        "region": fake.region,
        "baseUrl": fake.url,
        "maxTokens": 4096,
    }
    entry.update(keys)
    return entry


async def started(
    fake_bedrock: Any, gateway: StartGateway, aws: pytest.MonkeyPatch, **fleet: Any
) -> tuple[FakeBedrock, Any]:
    fake: FakeBedrock = await fake_bedrock()
    keys_of(fake, aws)
    gw = await gateway(fleet_yaml([bedrock("claude", fake)], **fleet))
    return fake, gw


async def test_plain_text_answer(fake_bedrock: Any, gateway: StartGateway, aws: Any) -> None:
    fake, gw = await started(fake_bedrock, gateway, aws)
    raw = await gw.client.chat.completions.with_raw_response.create(
        model="claude", messages=[{"role": "user", "content": "hello"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "echo: hello"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == MODEL
    assert completion.usage is not None
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert raw.headers["x-tiergate-tier"] == "claude"
    (received,) = fake.requests
    assert (received.operation, received.model_id) == ("converse", MODEL)
    assert received.body["inferenceConfig"] == {"maxTokens": 4096}
    assert not fake.rejected


async def test_plain_text_stream(fake_bedrock: Any, gateway: StartGateway, aws: Any) -> None:
    fake, gw = await started(fake_bedrock, gateway, aws)
    fake.enqueue(Reply([{"text": "The quick brown fox jumps."}], text_chunk=3))
    stream = await gw.client.chat.completions.create(
        model="claude", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The quick brown fox jumps."
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 9
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert fake.requests[0].operation == "converse-stream"


async def test_usage_chunk_only_when_asked(
    fake_bedrock: Any, gateway: StartGateway, aws: Any
) -> None:
    _, gw = await started(fake_bedrock, gateway, aws)
    stream = await gw.client.chat.completions.create(model="claude", messages=HELLO, stream=True)
    chunks = [chunk async for chunk in stream]
    assert all(chunk.usage is None for chunk in chunks)
    assert all(chunk.choices for chunk in chunks)


async def test_multi_turn_with_system_prompts(
    fake_bedrock: Any, gateway: StartGateway, aws: Any
) -> None:
    fake, gw = await started(fake_bedrock, gateway, aws)
    messages: list[Any] = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Another one."},
        {"role": "user", "content": "And a third."},
    ]
    completion = await gw.client.chat.completions.create(
        model="claude", messages=messages, temperature=0.2, top_p=0.5, stop=["\n\n"], max_tokens=50
    )
    assert completion.choices[0].message.content == "echo: And a third."
    body = fake.requests[0].body
    assert body["system"] == [{"text": "You are terse."}, {"text": "Answer in French."}]
    assert body["messages"] == [
        {"role": "user", "content": [{"text": "Name a colour."}]},
        {"role": "assistant", "content": [{"text": "Blue."}]},
        {"role": "user", "content": [{"text": "Another one."}, {"text": "And a third."}]},
    ]
    assert body["inferenceConfig"] == {
        "maxTokens": 50,
        "temperature": 0.2,
        "topP": 0.5,
        "stopSequences": ["\n\n"],
    }


async def test_image_input(fake_bedrock: Any, gateway: StartGateway, aws: Any) -> None:
    fake, gw = await started(fake_bedrock, gateway, aws)
    content: Any = [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]
    await gw.client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": content}]
    )
    blocks = fake.requests[0].body["messages"][0]["content"]
    assert blocks[1] == {"image": {"format": "png", "source": {"bytes": PNG}}}
    assert not fake.rejected


async def test_streamed_tool_call_round_trip(
    fake_bedrock: Any, gateway: StartGateway, aws: Any
) -> None:
    fake, gw = await started(fake_bedrock, gateway, aws)
    arguments = {"city": "Paris", "unit": "celsius"}
    fake.enqueue(
        Reply(
            [
                {"text": "Let me check."},
                {
                    "toolUse": {
                        "toolUseId": "tooluse_abc123",
                        "name": "get_weather",
                        "input": arguments,
                    }
                },
            ],
            stop_reason="tool_use",
            json_chunk=2,
        ),
        Reply([{"text": "It is 18 degrees in Paris."}]),
    )
    question: Any = [{"role": "user", "content": "Weather in Paris?"}]
    stream = await gw.client.chat.completions.create(
        model="claude", messages=question, tools=[WEATHER], tool_choice="auto", stream=True
    )
    calls: dict[int, dict[str, str]] = {}
    fragments = 0
    finish = None
    async for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += delta.id or ""
                if delta.function is not None:
                    call["name"] += delta.function.name or ""
                    call["arguments"] += delta.function.arguments or ""
                    fragments += bool(delta.function.arguments)
    assert finish == "tool_calls"
    assert list(calls) == [0]
    assert calls[0]["id"] == "tooluse_abc123"
    assert calls[0]["name"] == "get_weather"
    assert orjson.loads(calls[0]["arguments"]) == arguments
    assert fragments > 10  # arrived in many small pieces, accumulated by index
    # The tools went to Bedrock (LiteLLM #30053 dropped them), the description kept.
    sent = fake.requests[0].body["toolConfig"]
    assert sent["toolChoice"] == {"auto": {}}
    assert sent["tools"][0]["toolSpec"]["name"] == "get_weather"

    follow_up: Any = [
        *question,
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": calls[0]["id"],
                    "type": "function",
                    "function": {"name": calls[0]["name"], "arguments": calls[0]["arguments"]},
                }
            ],
        },
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": '{"temperature": 18}'},
    ]
    answer = await gw.client.chat.completions.create(
        model="claude", messages=follow_up, tools=[WEATHER]
    )
    assert answer.choices[0].message.content == "It is 18 degrees in Paris."
    turns = fake.requests[1].body["messages"]
    assert turns[1]["content"][1] == {
        "toolUse": {"toolUseId": "tooluse_abc123", "name": "get_weather", "input": arguments}
    }
    assert turns[2] == {
        "role": "user",
        "content": [
            {
                "toolResult": {
                    "toolUseId": "tooluse_abc123",
                    "content": [{"text": '{"temperature": 18}'}],
                }
            }
        ],
    }
    assert not fake.rejected


async def test_non_streamed_tool_call(fake_bedrock: Any, gateway: StartGateway, aws: Any) -> None:
    fake, gw = await started(fake_bedrock, gateway, aws)
    fake.enqueue(
        Reply(
            [
                {
                    "toolUse": {
                        "toolUseId": "tooluse_9",
                        "name": "get_weather",
                        "input": {"city": "Oslo"},
                    }
                }
            ],
            stop_reason="tool_use",
        )
    )
    completion = await gw.client.chat.completions.create(
        model="claude",
        messages=HELLO,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    (call,) = completion.choices[0].message.tool_calls or []
    assert call.id == "tooluse_9"
    assert orjson.loads(call.function.arguments) == {"city": "Oslo"}
    assert completion.choices[0].finish_reason == "tool_calls"
    assert fake.requests[0].body["toolConfig"]["toolChoice"] == {"tool": {"name": "get_weather"}}


ERRORS = [
    (
        "ThrottlingException",
        429,
        "Too many requests, please wait.",
        openai.RateLimitError,
        "rate_limit_exceeded",
    ),
    (
        "ModelNotReadyException",
        429,
        "Model is not ready.",
        openai.RateLimitError,
        "rate_limit_exceeded",
    ),
    (
        "ServiceUnavailableException",
        503,
        "Service unavailable.",
        openai.InternalServerError,
        "ServiceUnavailableException",
    ),
    (
        "ModelTimeoutException",
        408,
        "Model timed out.",
        openai.InternalServerError,
        "ModelTimeoutException",
    ),
    (
        "ModelErrorException",
        424,
        "The model failed.",
        openai.InternalServerError,
        "ModelErrorException",
    ),
    (
        "InternalServerException",
        500,
        "Internal error.",
        openai.InternalServerError,
        "InternalServerException",
    ),
    (
        "AccessDeniedException",
        403,
        "You don't have access to the model.",
        openai.PermissionDeniedError,
        "AccessDeniedException",
    ),
    (
        "ResourceNotFoundException",
        404,
        "Model not found.",
        openai.NotFoundError,
        "ResourceNotFoundException",
    ),
    (
        "ValidationException",
        400,
        "The provided model identifier is invalid.",
        openai.BadRequestError,
        "ValidationException",
    ),
    (
        "ValidationException",
        400,
        "Input is too long for requested model.",
        openai.BadRequestError,
        "context_length_exceeded",
    ),
]
STATUS = {
    "ThrottlingException": 429,
    "ModelNotReadyException": 429,
    "ServiceUnavailableException": 503,
    "ModelTimeoutException": 504,
    "ModelErrorException": 502,
    "InternalServerException": 500,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ValidationException": 400,
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("name", "status", "message", "error", "code"), ERRORS)
async def test_bedrock_errors_map_to_openai_errors(
    fake_bedrock: Any,
    gateway: StartGateway,
    aws: Any,
    *,
    stream: bool,
    name: str,
    status: int,
    message: str,
    error: type[openai.APIStatusError],
    code: str,
) -> None:
    fake, gw = await started(fake_bedrock, gateway, aws, fallback=NO_STATUS_FALLBACK)
    fake.enqueue(Fail(name, message, status))
    with pytest.raises(error) as caught:
        await gw.client.chat.completions.create(model="claude", messages=HELLO, stream=stream)
    assert caught.value.status_code == STATUS[name]
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["code"] == code
    assert message in body["message"]
    assert name in body["message"]


STREAM_ERRORS = [
    ("throttlingException", 429, openai.RateLimitError),
    ("modelStreamErrorException", 502, openai.InternalServerError),
    ("serviceUnavailableException", 503, openai.InternalServerError),
    ("internalServerException", 500, openai.InternalServerError),
    ("validationException", 400, openai.BadRequestError),
]


@pytest.mark.parametrize(("name", "status", "error"), STREAM_ERRORS)
async def test_in_stream_exception_before_content_is_an_error_reply(
    fake_bedrock: Any,
    gateway: StartGateway,
    aws: Any,
    *,
    name: str,
    status: int,
    error: type[openai.APIStatusError],
) -> None:
    fake, gw = await started(fake_bedrock, gateway, aws, fallback=NO_STATUS_FALLBACK)
    fake.enqueue(StreamFail(1, name, "stopped before any content"))  # after messageStart
    with pytest.raises(error) as caught:
        await gw.client.chat.completions.create(model="claude", messages=HELLO, stream=True)
    assert caught.value.status_code == status
    assert "stopped before any content" in str(caught.value)


@pytest.mark.parametrize("name", [n for n, _, _ in STREAM_ERRORS])
async def test_in_stream_exception_after_content_ends_the_stream_with_an_error(
    fake_bedrock: Any, gateway: StartGateway, aws: Any, name: str
) -> None:
    fake, gw = await started(fake_bedrock, gateway, aws)
    fake.enqueue(StreamFail(3, name, "broke mid-answer", Reply([{"text": "abcdefghijkl"}])))
    stream = await gw.client.chat.completions.create(model="claude", messages=HELLO, stream=True)
    received: list[str] = []

    async def read() -> None:
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")

    with pytest.raises(openai.APIError, match="broke mid-answer") as caught:
        await read()
    assert "".join(received) == "abcdefgh"  # two deltas of four characters arrived before the error
    assert name[:1].upper() + name[1:] in str(caught.value)


async def test_connection_dropped_mid_stream_ends_with_an_error(
    fake_bedrock: Any, gateway: StartGateway, aws: Any
) -> None:
    fake, gw = await started(fake_bedrock, gateway, aws)
    fake.enqueue(Reset(3, Reply([{"text": "abcdefghijkl"}])))
    stream = await gw.client.chat.completions.create(model="claude", messages=HELLO, stream=True)

    async def read() -> None:
        async for _ in stream:
            pass

    with pytest.raises(openai.APIError, match="failed mid-stream"):
        await read()


async def test_throttling_falls_back_to_another_tier(
    fake_bedrock: Any, gateway: StartGateway, upstreams: StartUpstreams, aws: Any
) -> None:
    fake = await fake_bedrock()
    keys_of(fake, aws)
    (backup,) = await upstreams("backup")
    text = fleet_yaml(
        [bedrock("claude", fake), tier("backup", backup)],
        fallback=[{"statusCode": [429, 500, 502, 503, 504]}],
    )
    gw = await gateway(text)
    fake.enqueue(
        Fail("ThrottlingException", "Too many requests", 429),
        StreamFail(1, "throttlingException", "Too many tokens per minute"),
    )
    raw = await gw.client.chat.completions.with_raw_response.create(model="claude", messages=HELLO)
    assert raw.headers["x-tiergate-tier"] == "backup"
    assert raw.headers["x-tiergate-attempts"] == "2"
    # Throttled inside the stream, before any content: still moves on.
    stream = await gw.client.chat.completions.create(model="claude", messages=HELLO, stream=True)
    text_out = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert "from backup" in text_out
    metrics = await gw.metrics()
    assert metric(metrics, "tiergate_fallbacks_total", from_tier="claude", to_tier="backup") == 2


async def test_a_stalled_bedrock_times_out_and_falls_back(
    fake_bedrock: Any, gateway: StartGateway, upstreams: StartUpstreams, aws: Any
) -> None:
    fake = await fake_bedrock()
    keys_of(fake, aws)
    (backup,) = await upstreams("backup")
    slow = bedrock("claude", fake, timeouts={"firstByteMs": 200})
    gw = await gateway(fleet_yaml([slow, tier("backup", backup)]))
    fake.enqueue(Stall(2.0))
    raw = await gw.client.chat.completions.with_raw_response.create(model="claude", messages=HELLO)
    assert raw.headers["x-tiergate-tier"] == "backup"


async def test_the_seed_cascade_ends_on_bedrock_when_both_self_hosted_tiers_fail(
    fake_bedrock: Any,
    gateway: StartGateway,
    upstreams: StartUpstreams,
    aws: Any,
    examples: Path,
) -> None:
    fake = await fake_bedrock(region="us-east-1")
    keys_of(fake, aws)
    # The seed file as given; only where its services live changes (loopback here), and
    # Bedrock's endpoint comes from the SDKs' standard variable.
    aws.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", fake.url)
    qwen, glm = await upstreams("qwen", "glm")
    qwen.status = glm.status = 503
    seed = (examples / "seed-bifrost-config.yaml").read_text()
    seed = seed.replace("http://inference-gateway.llm-d:8080/v1", qwen.url)
    seed = seed.replace("http://glm5-service.agentic-serving:8000/v1", glm.url)
    gw = await gateway(seed)
    raw = await gw.client.chat.completions.with_raw_response.create(
        model="self-hosted-qwen3", messages=HELLO, max_tokens=10_000
    )
    assert raw.headers["x-tiergate-tier"] == "bedrock-claude-sonnet"
    assert raw.headers["x-tiergate-attempts"] == "3"
    assert raw.parse().choices[0].message.content == "echo: hello"
    (received,) = fake.requests
    assert received.model_id == "anthropic.claude-sonnet-4-20250514"
    assert received.body["inferenceConfig"]["maxTokens"] == 4096  # the seed's maxTokens
    assert len(qwen.requests) == len(glm.requests) == 1
    stream = await gw.client.chat.completions.create(
        model="self-hosted-qwen3", messages=HELLO, stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "echo: hello"


@pytest.mark.parametrize(
    "model",
    [
        "anthropic.claude-sonnet-4-20250514-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-20250514-v1:0",
    ],
)
async def test_model_ids_and_arns_are_signed_as_sent(
    fake_bedrock: Any, gateway: StartGateway, aws: Any, model: str
) -> None:
    fake = await fake_bedrock()
    keys_of(fake, aws)
    gw = await gateway(fleet_yaml([bedrock("claude", fake, model=model)]))
    await gw.client.chat.completions.create(model="claude", messages=HELLO)
    assert fake.requests[0].model_id == model
    assert not fake.rejected


async def test_temporary_credentials_carry_their_session_token(
    fake_bedrock: Any, gateway: StartGateway, aws: Any
) -> None:
    fake = await fake_bedrock(session_token="FwoGZXIvYXdzEXAMPLETOKEN")
    keys_of(fake, aws)
    gw = await gateway(fleet_yaml([bedrock("claude", fake)]))
    await gw.client.chat.completions.create(model="claude", messages=HELLO)
    assert fake.requests[0].headers["x-amz-security-token"] == "FwoGZXIvYXdzEXAMPLETOKEN"


async def test_credentials_from_a_shared_profile(
    fake_bedrock: Any, gateway: StartGateway, aws: Any, tmp_path: Path
) -> None:
    fake = await fake_bedrock()
    credentials = tmp_path / "credentials"
    credentials.write_text(
        f"[serving]\naws_access_key_id = {fake.access_key}\n"
        f"aws_secret_access_key = {fake.secret_key}\n"
    )
    aws.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    aws.setenv("AWS_PROFILE", "serving")
    gw = await gateway(fleet_yaml([bedrock("claude", fake)]))
    await gw.client.chat.completions.create(model="claude", messages=HELLO)
    assert len(fake.requests) == 1


async def test_a_wrong_secret_is_refused_by_bedrock_and_reported_as_a_bad_gateway(
    fake_bedrock: Any, gateway: StartGateway, aws: Any
) -> None:
    fake = await fake_bedrock()
    keys_of(fake, aws)
    aws.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    gw = await gateway(fleet_yaml([bedrock("claude", fake)], fallback=NO_STATUS_FALLBACK))
    with pytest.raises(openai.InternalServerError) as caught:
        await gw.client.chat.completions.create(model="claude", messages=HELLO)
    assert caught.value.status_code == 502
    assert "InvalidSignatureException" in str(caught.value)
    assert "not-the-secret" not in str(caught.value.body)
    assert fake.rejected
    assert not fake.requests


async def test_no_credentials_fails_the_tier_and_the_cascade_moves_on(
    fake_bedrock: Any, gateway: StartGateway, upstreams: StartUpstreams, aws: Any
) -> None:
    fake = await fake_bedrock()
    (backup,) = await upstreams("backup")
    gw = await gateway(fleet_yaml([bedrock("claude", fake), tier("backup", backup)]))
    raw = await gw.client.chat.completions.with_raw_response.create(model="claude", messages=HELLO)
    assert raw.headers["x-tiergate-tier"] == "backup"
    metrics = await gw.metrics()
    assert metric(metrics, "tiergate_attempts_total", tier="claude", outcome="credentials") == 1
    assert not fake.requests


async def test_credentials_never_reach_logs(
    fake_bedrock: Any, gateway: StartGateway, aws: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fake = await fake_bedrock(session_token="SESSIONTOKENSECRETVALUE")
    keys_of(fake, aws)
    gw = await gateway(fleet_yaml([bedrock("claude", fake)]))
    botocore_logger = logging.getLogger("botocore")
    try:
        with caplog.at_level(logging.DEBUG):
            logs.setup("debug")  # as `tiergate serve --log-level debug` does
            await gw.client.chat.completions.create(model="claude", messages=HELLO)
            stream = await gw.client.chat.completions.create(
                model="claude", messages=HELLO, stream=True
            )
            async for _ in stream:
                pass
    finally:
        botocore_logger.setLevel(logging.NOTSET)
    assert caplog.records  # debug logging was on
    assert fake.secret_key not in caplog.text
    assert "SESSIONTOKENSECRETVALUE" not in caplog.text


async def test_cache_tokens_reach_the_usage_metrics(
    fake_bedrock: Any, gateway: StartGateway, aws: Any
) -> None:
    fake, gw = await started(fake_bedrock, gateway, aws)
    usage = {
        "inputTokens": 20,
        "outputTokens": 5,
        "totalTokens": 1525,
        "cacheReadInputTokens": 1200,
        "cacheWriteInputTokens": 300,
    }
    fake.enqueue(Reply([{"text": "cached"}], usage=usage), Reply([{"text": "again"}], usage=usage))
    completion = await gw.client.chat.completions.create(model="claude", messages=HELLO)
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 1520
    details = completion.usage.prompt_tokens_details
    assert details is not None
    assert details.cached_tokens == 1200
    stream = await gw.client.chat.completions.create(model="claude", messages=HELLO, stream=True)
    async for _ in stream:
        pass
    metrics = await gw.metrics()
    assert metric(metrics, "tiergate_tokens_total", tier="claude", direction="input") == 3040
    assert metric(metrics, "tiergate_tokens_total", tier="claude", direction="output") == 10
    assert metric(metrics, "tiergate_tokens_total", tier="claude", direction="cache_read") == 2400
    assert metric(metrics, "tiergate_tokens_total", tier="claude", direction="cache_write") == 600


async def test_requests_bedrock_cannot_take_get_a_clear_400(
    fake_bedrock: Any, gateway: StartGateway, aws: Any
) -> None:
    fake, gw = await started(fake_bedrock, gateway, aws)
    content: Any = [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    with pytest.raises(openai.BadRequestError) as caught:
        await gw.client.chat.completions.create(
            model="claude", messages=[{"role": "user", "content": content}]
        )
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["param"] == "messages[0].content[0].image_url"
    assert "base64 data URL" in body["message"]
    assert not fake.requests


async def test_openai_parameters_without_a_converse_counterpart_never_cause_a_400(
    fake_bedrock: Any, gateway: StartGateway, aws: Any
) -> None:
    fake, gw = await started(fake_bedrock, gateway, aws)
    completion = await gw.client.chat.completions.create(
        model="claude",
        messages=HELLO,
        n=1,
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=0.5,
        logit_bias={"50256": -100},
        user="someone",
        response_format={"type": "text"},
        parallel_tool_calls=False,
        tools=[WEATHER],
        temperature=1.8,
    )
    assert completion.choices[0].message.content == "echo: hello"
    assert not fake.rejected
    assert fake.requests[0].body["inferenceConfig"]["temperature"] == 1.0


async def test_other_endpoints_skip_the_bedrock_tier(
    fake_bedrock: Any, gateway: StartGateway, aws: Any
) -> None:
    fake, gw = await started(fake_bedrock, gateway, aws)
    with pytest.raises(openai.APIStatusError) as caught:
        await gw.client.embeddings.create(model="claude", input="hello")
    assert caught.value.status_code == 503
    assert not fake.requests


async def test_a_bedrock_tier_without_a_region_is_left_out_and_the_rest_serves(
    fake_bedrock: Any,
    gateway: StartGateway,
    upstreams: StartUpstreams,
    aws: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = await fake_bedrock()
    keys_of(fake, aws)
    (backup,) = await upstreams("backup")
    entry = bedrock("claude", fake)
    del entry["region"]
    gw = await gateway(fleet_yaml([entry, tier("backup", backup)]))
    raw = await gw.client.chat.completions.with_raw_response.create(model="claude", messages=HELLO)
    assert raw.headers["x-tiergate-tier"] == "backup"
    assert "tier 'claude' has no AWS region" in caplog.text
    ready = await gw.http.get(f"{gw.url}/ready")
    assert (await ready.json())["tiers"] == {"claude": False, "backup": True}
