"""Self-tests of the Bedrock test double: its frames, its wire protocol, its checks, its faults.

The fake is only worth its tests if AWS's own code agrees with it, so botocore judges: its
event-stream decoder reads the frames, its response parser reads the answers, its SigV4 signer
signs the requests, and a real botocore client talks to the fake end to end.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, NamedTuple
from urllib.parse import quote

import aiohttp
import botocore.session
import pytest
import yarl
from botocore.awsrequest import HeadersDict
from botocore.config import Config
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer, EventStreamMessage
from botocore.exceptions import EventStreamError
from botocore.parsers import create_parser
from multidict import CIMultiDictProxy

from tests.providers.bedrock import converse_rules
from tests.providers.bedrock.eventstream import encode_message, event_frame, exception_frame
from tests.providers.bedrock.fake import (
    EVENT_STREAM,
    Fail,
    FakeBedrock,
    Reply,
    Reset,
    Stall,
    StreamFail,
    sign_headers,
)

MODEL_ID = "anthropic.claude-sonnet-4-20250514-v1:0"
TIMEOUT_S = 10.0
CORAL_SERVICE = "http://internal.amazon.com/coral/com.amazon.coral.service/"
CORAL_BEDROCK = "http://internal.amazon.com/coral/com.amazon.bedrock/"
WEATHER_TOOL = {
    "toolSpec": {
        "name": "get_weather",
        "description": "The weather in a city",
        "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}},
    }
}
TOOL_REPLY = Reply(
    [
        {"reasoningContent": {"reasoningText": {"text": "They want Paris.", "signature": "sig"}}},
        {"text": "Let me look that up."},
        {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}},
    ],
    stop_reason="tool_use",
)

FakeFactory = Callable[..., Any]


class Answer(NamedTuple):
    """A complete HTTP answer from the fake."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def error_type(self) -> str:
        return self.headers.get("x-amzn-ErrorType", "")


class _RawStream:
    """What botocore's EventStream reads: the body in small chunks, splitting frames apart."""

    def __init__(self, data: bytes, chunk: int = 7) -> None:
        self._data = data
        self._chunk = chunk

    def stream(self) -> Iterator[bytes]:
        for start in range(0, len(self._data), self._chunk):
            yield self._data[start : start + self._chunk]

    def close(self) -> None:
        pass


# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as session:
        yield session


def endpoint(fake: FakeBedrock, operation: str, model_id: str = MODEL_ID) -> str:
    """The operation's URL, the model id percent-encoded as botocore sends it."""
    return f"{fake.url}/model/{quote(model_id, safe='')}/{operation}"


def conversation(*texts: str) -> dict[str, Any]:
    """Alternating user / assistant text messages, starting with the user."""
    roles = ("user", "assistant")
    return {
        "messages": [
            {"role": roles[index % 2], "content": [{"text": text}]}
            for index, text in enumerate(texts)
        ]
    }


def signed(fake: FakeBedrock, url: str, body: bytes, **overrides: Any) -> dict[str, str]:
    """Headers signed by botocore with the fake's credentials, or with ``overrides``."""
    credentials: dict[str, Any] = {
        "access_key": fake.access_key,
        "secret_key": fake.secret_key,
        "region": fake.region,
        "session_token": fake.session_token,
    }
    return sign_headers(url, body, **(credentials | overrides))


async def send(
    http: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> Answer:
    """POST ``body`` to ``url`` as given (``encoded=True``: no re-quoting of the path)."""
    async with (
        asyncio.timeout(TIMEOUT_S),
        http.post(yarl.URL(url, encoded=True), data=body, headers=headers) as response,
    ):
        return Answer(response.status, response.headers, await response.read())


async def call(
    http: aiohttp.ClientSession, fake: FakeBedrock, operation: str, body: dict[str, Any]
) -> Answer:
    """A correctly signed request of ``operation`` with ``body``."""
    url = endpoint(fake, operation)
    raw = json.dumps(body).encode()
    return await send(http, url, raw, signed(fake, url, raw))


async def read_stream(
    http: aiohttp.ClientSession, fake: FakeBedrock, body: dict[str, Any], chunks: list[bytes]
) -> int:
    """A signed converse-stream request; its body's chunks go to ``chunks`` as they arrive."""
    url = endpoint(fake, "converse-stream")
    raw = json.dumps(body).encode()
    headers = signed(fake, url, raw)
    async with (
        asyncio.timeout(TIMEOUT_S),
        http.post(yarl.URL(url, encoded=True), data=raw, headers=headers) as response,
    ):
        async for chunk in response.content.iter_any():
            chunks.append(chunk)
        return response.status


def botocore_parse(operation: str, answer: Answer) -> dict[str, Any]:
    """Parse ``answer`` the way a botocore client parses a ``bedrock-runtime`` response."""
    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    operation_model = model.operation_model(operation)
    streaming = answer.status == 200 and operation_model.has_event_stream_output
    response = {
        "status_code": answer.status,
        "headers": HeadersDict(answer.headers.items()),
        "body": _RawStream(answer.body) if streaming else answer.body,
        "context": {"operation_name": operation},
    }
    output_shape = operation_model.output_shape
    assert output_shape is not None
    parsed: dict[str, Any] = create_parser("rest-json").parse(response, output_shape)
    return parsed


def decode_frames(data: bytes) -> list[EventStreamMessage]:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return list(buffer)


def event_names(events: list[dict[str, Any]]) -> list[str]:
    return [next(iter(event)) for event in events]


# -- the event-stream encoder ------------------------------------------------------------------


def test_empty_message_matches_the_reference_vector() -> None:
    # aws-c-event-stream's test vector encoded/positive/empty_message.
    assert encode_message({}, b"").hex() == "000000100000000005c248eb7d98c8ff"


def test_frames_decode_with_botocore_even_split_into_pieces() -> None:
    frames = [
        event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "héllo"}}),
        exception_frame("throttlingException", "Too many requests"),
        encode_message({"x-custom": "v"}, b"\x00\x01raw"),
    ]
    buffer = EventStreamBuffer()
    data = b"".join(frames)
    messages: list[EventStreamMessage] = []
    for start in range(0, len(data), 5):
        buffer.add_data(data[start : start + 5])
        messages.extend(buffer)
    assert [m.prelude.total_length for m in messages] == [len(frame) for frame in frames]
    event, exception, raw = messages
    assert event.headers == {
        ":message-type": "event",
        ":event-type": "contentBlockDelta",
        ":content-type": "application/json",
    }
    assert json.loads(event.payload) == {"contentBlockIndex": 0, "delta": {"text": "héllo"}}
    assert exception.headers[":message-type"] == "exception"
    assert exception.headers[":exception-type"] == "throttlingException"
    assert json.loads(exception.payload) == {"message": "Too many requests"}
    assert raw.headers == {"x-custom": "v"}
    assert raw.payload == b"\x00\x01raw"


@pytest.mark.parametrize("where", ["prelude crc", "header", "payload", "message crc"])
def test_a_corrupted_byte_fails_the_checksum(where: str) -> None:
    frame = bytearray(event_frame("messageStop", {"stopReason": "end_turn"}))
    headers_end = 12 + int.from_bytes(frame[4:8])
    position = {"prelude crc": 9, "header": 14, "payload": headers_end + 2, "message crc": -1}
    frame[position[where]] ^= 0x01
    with pytest.raises(ChecksumMismatch):
        decode_frames(bytes(frame))


# -- answers as botocore reads them --------------------------------------------------------------


async def test_converse_stream_parses_with_botocore(
    fake_bedrock: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await fake_bedrock()
    fake.enqueue(TOOL_REPLY)
    body = conversation("What is the weather in Paris?") | {"toolConfig": {"tools": [WEATHER_TOOL]}}
    answer = await call(http, fake, "converse-stream", body)

    assert answer.status == 200
    assert answer.headers["Content-Type"] == EVENT_STREAM
    events = list(botocore_parse("ConverseStream", answer)["stream"])
    assert event_names(events)[:2] == ["messageStart", "contentBlockDelta"]
    assert event_names(events)[-2:] == ["messageStop", "metadata"]
    deltas = [e["contentBlockDelta"] for e in events if "contentBlockDelta" in e]
    by_block: dict[int, list[dict[str, Any]]] = {}
    for delta in deltas:
        by_block.setdefault(delta["contentBlockIndex"], []).append(delta["delta"])
    reasoning = [d["reasoningContent"] for d in by_block[0]]
    assert "".join(r.get("text", "") for r in reasoning) == "They want Paris."
    assert reasoning[-1] == {"signature": "sig"}
    assert "".join(d["text"] for d in by_block[1]) == "Let me look that up."
    assert all(len(d["text"]) <= 4 for d in by_block[1])
    fragments = [d["toolUse"]["input"] for d in by_block[2]]
    assert json.loads("".join(fragments)) == {"city": "Paris"}
    assert all(len(fragment) <= 3 for fragment in fragments)
    starts = [e["contentBlockStart"] for e in events if "contentBlockStart" in e]
    assert starts == [
        {
            "contentBlockIndex": 2,
            "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather"}},
        }
    ]
    stops = [e["contentBlockStop"]["contentBlockIndex"] for e in events if "contentBlockStop" in e]
    assert stops == [0, 1, 2]
    assert events[-2] == {"messageStop": {"stopReason": "tool_use"}}
    prompt = len("What is the weather in Paris?") // 4 + 1
    completion = len("Let me look that up.") // 4 + 1
    assert events[-1]["metadata"] == {
        "usage": {
            "inputTokens": prompt,
            "outputTokens": completion,
            "totalTokens": prompt + completion,
        },
        "metrics": {"latencyMs": 12},
    }
    # On the wire, each payload is the event itself plus Bedrock's "p" padding, not wrapped.
    first_delta = json.loads(decode_frames(answer.body)[1].payload)
    assert set(first_delta) == {"contentBlockIndex", "delta", "p"}
    [received] = fake.requests
    assert (received.operation, received.model_id, received.body) == (
        "converse-stream",
        MODEL_ID,
        body,
    )


async def test_converse_parses_with_botocore_and_passes_usage_through(
    fake_bedrock: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await fake_bedrock()
    usage = {
        "inputTokens": 100,
        "outputTokens": 5,
        "totalTokens": 105,
        "cacheReadInputTokens": 80,
        "cacheWriteInputTokens": 20,
    }
    fake.enqueue(Reply([{"text": "Hi there"}], stop_reason="max_tokens", usage=usage))
    answer = await call(http, fake, "converse", conversation("Hi"))

    assert answer.status == 200
    parsed = botocore_parse("Converse", answer)
    assert parsed["output"] == {"message": {"role": "assistant", "content": [{"text": "Hi there"}]}}
    assert parsed["stopReason"] == "max_tokens"
    assert parsed["usage"] == usage
    assert parsed["metrics"] == {"latencyMs": 12}
    assert uuid.UUID(answer.headers["x-amzn-RequestId"])


async def test_behaviours_are_used_in_order_then_the_echo(
    fake_bedrock: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await fake_bedrock()
    fake.enqueue(Reply([{"text": "first"}]), Reply([{"text": "second"}]))
    texts = []
    for question in ("a", "b", "what now?"):
        answer = await call(http, fake, "converse", conversation("hello", "hi", question))
        texts.append(answer.json()["output"]["message"]["content"][0]["text"])
    assert texts == ["first", "second", "echo: what now?"]
    assert len(fake.requests) == 3


async def test_a_botocore_client_talks_to_the_fake(fake_bedrock: FakeFactory) -> None:
    fake = await fake_bedrock(session_token="session-token", region="eu-west-3")
    arn = "arn:aws:bedrock:eu-west-3:123456789012:inference-profile/eu.anthropic.claude-v1:0"
    fake.enqueue(Reply([{"text": "non-streamed"}]), Reply([{"text": "streamed"}]))

    def converse_both() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        client = botocore.session.Session().create_client(
            "bedrock-runtime",
            endpoint_url=fake.url,
            region_name=fake.region,
            aws_access_key_id=fake.access_key,
            aws_secret_access_key=fake.secret_key,
            aws_session_token="session-token",
            config=Config(
                retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=5
            ),
        )
        messages = [{"role": "user", "content": [{"text": "Hi"}]}]
        try:
            reply = client.converse(modelId=arn, messages=messages)
            stream = client.converse_stream(modelId=MODEL_ID, messages=messages)["stream"]
            return reply, list(stream)
        finally:
            client.close()

    async with asyncio.timeout(TIMEOUT_S):
        reply, events = await asyncio.to_thread(converse_both)

    assert fake.rejected == []
    assert reply["output"]["message"]["content"] == [{"text": "non-streamed"}]
    text = "".join(
        e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e
    )
    assert text == "streamed"
    assert [(r.operation, r.model_id) for r in fake.requests] == [
        ("converse", arn),
        ("converse-stream", MODEL_ID),
    ]


# -- SigV4 -------------------------------------------------------------------------------------


async def test_a_botocore_signed_request_is_accepted(
    fake_bedrock: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await fake_bedrock(session_token="session-token")
    answer = await call(http, fake, "converse", conversation("Hi"))
    assert answer.status == 200, answer.body
    assert fake.rejected == []
    assert fake.requests[0].headers["x-amz-security-token"] == "session-token"


class Forged(NamedTuple):
    """What a forgery sends: the URL, the body and the headers."""

    url: str
    body: bytes
    headers: dict[str, str]


def _forge(case: str, fake: FakeBedrock) -> Forged:
    url = endpoint(fake, "converse")
    body = json.dumps(conversation("Hi")).encode()
    now = datetime.datetime.now(datetime.UTC)
    stale, future = now - datetime.timedelta(minutes=10), now + datetime.timedelta(minutes=10)
    forgeries: dict[str, Callable[[], Forged]] = {
        "tampered body": lambda: Forged(url, body.replace(b"Hi", b"Yo"), signed(fake, url, body)),
        "wrong secret": lambda: Forged(url, body, signed(fake, url, body, secret_key="guess")),
        "wrong region": lambda: Forged(url, body, signed(fake, url, body, region="us-west-2")),
        "stale date": lambda: Forged(url, body, signed(fake, url, body, at=stale)),
        "future date": lambda: Forged(url, body, signed(fake, url, body, at=future)),
        "path decoded by the client": lambda: Forged(
            url.replace("%3A", ":"), body, signed(fake, url, body)
        ),
        "unknown access key": lambda: Forged(url, body, signed(fake, url, body, access_key="AKX")),
        "no session token": lambda: Forged(url, body, signed(fake, url, body, session_token=None)),
        "no authorization": lambda: Forged(url, body, {"Content-Type": "application/json"}),
    }
    return forgeries[case]()


@pytest.mark.parametrize(
    ("case", "error_type"),
    [
        ("tampered body", "InvalidSignatureException"),
        ("wrong secret", "InvalidSignatureException"),
        ("wrong region", "InvalidSignatureException"),
        ("stale date", "InvalidSignatureException"),
        ("future date", "InvalidSignatureException"),
        ("path decoded by the client", "InvalidSignatureException"),
        ("unknown access key", "UnrecognizedClientException"),
        ("no session token", "UnrecognizedClientException"),
        ("no authorization", "MissingAuthenticationTokenException"),
    ],
)
async def test_a_bad_signature_is_refused_like_aws(
    fake_bedrock: FakeFactory, http: aiohttp.ClientSession, case: str, error_type: str
) -> None:
    fake = await fake_bedrock(session_token="session-token")
    forged = _forge(case, fake)
    answer = await send(http, *forged)

    assert answer.status == 403
    assert answer.error_type() == f"{error_type}:{CORAL_SERVICE}"
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.json()["message"]
    assert uuid.UUID(answer.headers["x-amzn-RequestId"])
    assert botocore_parse("Converse", answer)["Error"]["Code"] == error_type
    assert fake.requests == []
    [reason] = fake.rejected
    assert reason.startswith(f"403 {error_type}")


# -- body validation -----------------------------------------------------------------------------


def _user(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


def _assistant(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": list(blocks)}


TOOL_USE = {
    "toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}
}
TOOL_RESULT = {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "Sunny"}]}}
TOOLS = {"toolConfig": {"tools": [WEATHER_TOOL]}}


def _tool_turns(result: dict[str, Any] = TOOL_RESULT) -> list[dict[str, Any]]:
    return [_user({"text": "Weather?"}), _assistant(TOOL_USE), _user(result)]


def _with_spec(**changes: Any) -> dict[str, Any]:
    return {"toolConfig": {"tools": [{"toolSpec": WEATHER_TOOL["toolSpec"] | changes}]}}


INVALID_BODIES: dict[str, tuple[dict[str, Any], str]] = {
    "consecutive user messages": (
        {"messages": [_user({"text": "a"}), _user({"text": "b"})]},
        converse_rules.ROLES_NOT_ALTERNATING,
    ),
    "blank text": (
        {"messages": [_user({"text": "  \n"})]},
        "The text field in the ContentBlock object at messages.0.content.0 is blank.",
    ),
    "toolUse without toolConfig": (
        {"messages": _tool_turns()},
        converse_rules.NO_TOOL_CONFIG,
    ),
    "empty tool description": (
        {"messages": [_user({"text": "a"})]} | _with_spec(description=""),
        "toolConfig.tools[0].toolSpec.description",
    ),
    "bad tool name": (
        {"messages": [_user({"text": "a"})]} | _with_spec(name="get weather"),
        "Value 'get weather' at 'toolConfig.tools.1.member.toolSpec.name' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+",
    ),
    "unknown top-level field": (
        conversation("a") | {"stream": True},
        'Unknown parameter in input: "stream"',
    ),
    "image bytes not base64": (
        {"messages": [_user({"image": {"format": "png", "source": {"bytes": "not base64!"}}})]},
        "messages.1.member.content.1.member.image.source.bytes",
    ),
    "first message from the assistant": (
        {"messages": [_assistant({"text": "a"}), _user({"text": "b"})]},
        converse_rules.FIRST_MESSAGE_NOT_USER,
    ),
    "system role in messages": (
        {"messages": [{"role": "system", "content": [{"text": "Be brief"}]}, _user({"text": "a"})]},
        "The role 'system' is not allowed at messages.0.role",
    ),
    "unknown role": (
        {"messages": [{"role": "tool", "content": [{"text": "a"}]}]},
        "Member must satisfy enum value set: [user, assistant, system]",
    ),
    "empty content": (
        {"messages": [_user()]},
        "The content field in the Message object at messages.0 is empty.",
    ),
    "toolResult for another toolUse": (
        {"messages": _tool_turns({"toolResult": {"toolUseId": "x", "content": [{"text": "1"}]}})}
        | TOOLS,
        "The toolUseId x of the toolResult block at messages.2.content.0 does not match",
    ),
    "toolUse left without a result": (
        {"messages": _tool_turns({"text": "never mind"})} | TOOLS,
        "Expected toolResult blocks at messages.2.content for the following Ids: tooluse_1",
    ),
    "bad toolUseId": (
        {
            "messages": [
                _user({"text": "a"}),
                _assistant({"toolUse": TOOL_USE["toolUse"] | {"toolUseId": "a b"}}),
            ]
        }
        | TOOLS,
        "Member must satisfy regular expression pattern: [a-zA-Z0-9_.:-]+",
    ),
    "toolUse input not an object": (
        {
            "messages": [
                _user({"text": "a"}),
                _assistant({"toolUse": TOOL_USE["toolUse"] | {"input": "{}"}}),
            ]
        }
        | TOOLS,
        "The input field of the toolUse block at messages.1.content.0 must be a JSON object.",
    ),
    "toolChoice of an undefined tool": (
        conversation("a")
        | {"toolConfig": TOOLS["toolConfig"] | {"toolChoice": {"tool": {"name": "other"}}}},
        "The tool other named in toolConfig.toolChoice is not defined",
    ),
    "temperature above 1": (
        conversation("a") | {"inferenceConfig": {"temperature": 1.5}},
        "Member must have value less than or equal to 1",
    ),
}


@pytest.mark.parametrize("case", list(INVALID_BODIES))
async def test_an_invalid_body_is_refused_with_a_validation_exception(
    fake_bedrock: FakeFactory, http: aiohttp.ClientSession, case: str
) -> None:
    body, expected = INVALID_BODIES[case]
    fake = await fake_bedrock()
    answer = await call(http, fake, "converse", body)

    assert answer.status == 400
    assert answer.error_type() == f"ValidationException:{CORAL_BEDROCK}"
    assert expected in answer.json()["message"]
    assert fake.requests == []
    assert len(fake.rejected) == 1


def test_a_whole_tool_conversation_is_valid() -> None:
    shapes = converse_rules.load_input_shapes()
    body = {
        "system": [{"text": "Be brief."}, {"cachePoint": {"type": "default"}}],
        "messages": [
            _user(
                {"text": "Weather?"}, {"image": {"format": "png", "source": {"bytes": "iVBORw=="}}}
            ),
            _assistant({"text": "Looking."}, TOOL_USE),
            _user(TOOL_RESULT),
            _assistant({"text": "Sunny."}),
        ],
        "inferenceConfig": {
            "maxTokens": 100,
            "temperature": 0.5,
            "topP": 1,
            "stopSequences": ["\n\n"],
        },
        "toolConfig": {"tools": [WEATHER_TOOL], "toolChoice": {"tool": {"name": "get_weather"}}},
        "additionalModelRequestFields": {"top_k": 5},
    }
    for shape in shapes.values():
        assert converse_rules.problems(body, model_id=MODEL_ID, input_shape=shape) == []


# -- scripted faults ---------------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["converse", "converse-stream"])
async def test_fail_answers_an_http_error(
    fake_bedrock: FakeFactory, http: aiohttp.ClientSession, operation: str
) -> None:
    fake = await fake_bedrock()
    fake.enqueue(Fail("ThrottlingException", "Too many requests, please wait.", 429))
    answer = await call(http, fake, operation, conversation("Hi"))

    assert answer.status == 429
    assert answer.error_type() == f"ThrottlingException:{CORAL_BEDROCK}"
    error = botocore_parse("ConverseStream", answer)["Error"]
    assert error == {"Code": "ThrottlingException", "Message": "Too many requests, please wait."}
    assert len(fake.requests) == 1


async def test_stream_fail_sends_an_exception_frame_after_some_frames(
    fake_bedrock: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await fake_bedrock()
    fake.enqueue(StreamFail(2, "throttlingException", "Slow down."))
    answer = await call(http, fake, "converse-stream", conversation("Hi"))

    assert answer.status == 200
    frames = decode_frames(answer.body)
    assert [f.headers[":message-type"] for f in frames] == ["event", "event", "exception"]
    received: list[dict[str, Any]] = []
    with pytest.raises(EventStreamError) as raised:
        received.extend(botocore_parse("ConverseStream", answer)["stream"])
    assert event_names(received) == ["messageStart", "contentBlockDelta"]
    assert raised.value.response["Error"] == {
        "Code": "throttlingException",
        "Message": "Slow down.",
    }


async def test_stream_fail_on_converse_is_the_matching_http_error(
    fake_bedrock: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await fake_bedrock()
    fake.enqueue(StreamFail(2, "serviceUnavailableException", "Try later."))
    answer = await call(http, fake, "converse", conversation("Hi"))
    assert answer.status == 503
    assert answer.error_type() == f"ServiceUnavailableException:{CORAL_BEDROCK}"


async def test_reset_drops_the_stream_after_some_frames(
    fake_bedrock: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await fake_bedrock()
    fake.enqueue(Reset(after_frames=3, reply=Reply([{"text": "abcdefghijkl"}])))
    chunks: list[bytes] = []
    with pytest.raises(aiohttp.ClientPayloadError):
        await read_stream(http, fake, conversation("Hi"), chunks)
    frames = decode_frames(b"".join(chunks))
    assert [f.headers[":event-type"] for f in frames] == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockDelta",
    ]


async def test_reset_on_converse_drops_the_connection_before_any_answer(
    fake_bedrock: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await fake_bedrock()
    fake.enqueue(Reset())
    with pytest.raises(aiohttp.ClientConnectionError):
        await call(http, fake, "converse", conversation("Hi"))
    assert len(fake.requests) == 1


async def test_stall_delays_the_answer_then_echoes(
    fake_bedrock: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await fake_bedrock()
    fake.enqueue(Stall(0.3))
    started = time.monotonic()
    answer = await call(http, fake, "converse", conversation("Still there?"))
    assert time.monotonic() - started >= 0.3
    assert answer.json()["output"]["message"]["content"] == [{"text": "echo: Still there?"}]


async def test_delay_spaces_the_frames_of_a_stream(
    fake_bedrock: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await fake_bedrock()
    fake.enqueue(Reply([{"text": "abcdefgh"}], delay_s=0.05))  # 6 frames, 5 gaps
    chunks: list[bytes] = []
    started = time.monotonic()
    assert await read_stream(http, fake, conversation("Hi"), chunks) == 200
    assert time.monotonic() - started >= 0.25
    assert len(chunks) > 1
    assert len(decode_frames(b"".join(chunks))) == 6


async def test_an_unknown_operation_is_refused(
    fake_bedrock: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await fake_bedrock()
    url = f"{fake.url}/model/{quote(MODEL_ID, safe='')}/invoke"
    raw = b"{}"
    answer = await send(http, url, raw, signed(fake, url, raw))
    assert answer.status == 404
    assert answer.error_type().startswith("UnknownOperationException:")
    assert fake.requests == []
