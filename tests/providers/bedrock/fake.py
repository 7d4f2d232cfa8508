"""A fake of Amazon Bedrock Runtime's Converse API, the test double of the Bedrock provider.

``FakeBedrock`` is a real aiohttp server on ``127.0.0.1`` with a free port that speaks Bedrock
Runtime's REST-JSON wire protocol:

- ``POST /model/{modelId}/converse`` and ``POST /model/{modelId}/converse-stream``, the model id
  percent-encoded in the path (``anthropic.claude-sonnet-4-20250514-v1%3A0``);
- a SigV4 check of every request (:mod:`tests.providers.bedrock.sigv4`), recomputed with botocore
  from the path exactly as received, so a client that signs one path and sends another (``%3A``
  decoded to ``:`` by its URL library) fails as it does on AWS; the credentials given to the
  constructor are accepted, and any set registered later with ``accept(...)`` (those an STS
  issued);
- the body checked against botocore's model of the API and Bedrock's conversation rules
  (:mod:`tests.providers.bedrock.converse_rules`);
- ConverseStream answers in AWS event-stream framing (:mod:`tests.providers.bedrock.eventstream`),
  one event per frame, each JSON payload padded with a ``"p"`` member as Bedrock pads them.

Each accepted request takes the next behaviour from a FIFO queue (``fake.enqueue(Reply(...),
Fail(...))``); with an empty queue the answer echoes the last user text (``"echo: hi"``).
Behaviours: :class:`Reply`, :class:`Fail`, :class:`StreamFail`, :class:`Reset`, :class:`Stall`.

What it saw: ``requests`` (a :class:`Received` per accepted request, in arrival order) and
``rejected`` (a line per refused request: status, error type and why, with the canonical request
the fake computed when a signature does not match).
"""

from __future__ import annotations

import asyncio
import json
import re
import string
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from tests.loopback import LoopbackServer
from tests.providers.bedrock import converse_rules, sigv4
from tests.providers.bedrock.eventstream import event_frame, exception_frame
from tests.providers.bedrock.sigv4 import sign_headers  # noqa: F401 - re-exported for the tests
from tiergate.emulator.routes import reset_connection

SERVICE = "bedrock"
LATENCY_MS = 12
EVENT_STREAM = "application/vnd.amazon.eventstream"
_PATH = re.compile(r"/model/(?P<model>[^/]+)/(?P<operation>converse|converse-stream)")
_CORAL_SERVICE = "http://internal.amazon.com/coral/com.amazon.coral.service/"
_CORAL_BEDROCK = "http://internal.amazon.com/coral/com.amazon.bedrock/"
_PADDING = string.ascii_lowercase + string.ascii_uppercase + string.digits
# HTTP status of each in-stream exception (ConverseStream's model), for StreamFail on converse.
_STREAM_EXCEPTION_STATUS = {
    "internalServerException": 500,
    "modelStreamErrorException": 424,
    "serviceUnavailableException": 503,
    "throttlingException": 429,
    "validationException": 400,
}
_STREAMABLE_BLOCKS = ("text", "toolUse", "reasoningContent")
# Room for images and documents in a body (aiohttp's default limit is 1 MiB).
_MAX_BODY_BYTES = 32 * 1024 * 1024


# -- behaviours ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """A successful answer: Converse content blocks, also streamed as ConverseStream events.

    ``content`` holds ``{"text": ...}``, ``{"toolUse": {"toolUseId", "name", "input"}}`` and
    ``{"reasoningContent": {"reasoningText": {"text", "signature"}}}`` blocks. ``usage`` is
    sent as given; by default it is computed from the characters of text (``// 4 + 1``). A
    stream splits text into ``text_chunk``-character deltas and a tool's compact JSON input into
    ``json_chunk``-character fragments, and sleeps ``delay_s`` between frames.
    """

    content: list[dict[str, Any]]
    stop_reason: str = "end_turn"
    usage: dict[str, int] | None = None
    text_chunk: int = 4
    json_chunk: int = 3
    delay_s: float = 0.0

    def __post_init__(self) -> None:
        if self.text_chunk < 1 or self.json_chunk < 1:
            raise ValueError("text_chunk and json_chunk must be at least 1")
        for block in self.content:
            if len(block) != 1 or next(iter(block)) not in _STREAMABLE_BLOCKS:
                raise ValueError(f"Reply content blocks are one of {_STREAMABLE_BLOCKS}: {block}")


@dataclass(frozen=True)
class Fail:
    """An HTTP error before any stream frame, e.g. ``Fail("ThrottlingException", "...", 429)``."""

    exception_type: str
    message: str
    status: int


@dataclass(frozen=True)
class StreamFail:
    """A stream that breaks with an in-stream exception after ``after_frames`` frames.

    ``exception_type`` is camelCase as sent in the frame (``throttlingException``,
    ``modelStreamErrorException``, ...); ``messageStart`` counts as a frame. On ``converse`` the
    same failure comes back as an HTTP error (``ThrottlingException``, 429).
    """

    after_frames: int
    exception_type: str
    message: str
    reply: Reply | None = None


@dataclass(frozen=True)
class Reset:
    """Drop the connection abruptly, without an exception frame.

    On ``converse-stream`` the status line and headers go out, then ``after_frames`` frames, then
    the connection is aborted mid-body. On ``converse`` the connection is reset (TCP RST) before
    any byte of a response.
    """

    after_frames: int = 0
    reply: Reply | None = None


@dataclass(frozen=True)
class Stall:
    """Sleep ``seconds`` before answering, then answer with the default echo."""

    seconds: float


Behaviour = Reply | Fail | StreamFail | Reset | Stall


@dataclass(frozen=True)
class Received:
    """One accepted request: ``converse`` or ``converse-stream``, the decoded model id, the body
    and the headers (names in lower case)."""

    operation: str
    model_id: str
    body: dict[str, Any]
    headers: dict[str, str]


class _RejectionError(Exception):
    """A request refused before it reaches a behaviour: its status, AWS error type and reason."""

    def __init__(
        self, status: int, error_type: str, message: str, reason: str, namespace: str
    ) -> None:
        super().__init__(f"{status} {error_type}: {reason}")
        self.status = status
        self.error_type = error_type
        self.message = message
        self.namespace = namespace

    @classmethod
    def signature(cls, error: sigv4.SignatureError) -> _RejectionError:
        return cls(403, error.error_type, error.message, error.reason, _CORAL_SERVICE)

    @classmethod
    def bedrock(cls, status: int, error_type: str, message: str) -> _RejectionError:
        return cls(status, error_type, message, message, _CORAL_BEDROCK)

    def response(self) -> web.Response:
        return _error_response(self.status, self.error_type, self.message, self.namespace)


# -- the server ------------------------------------------------------------------------------


class FakeBedrock(LoopbackServer):
    """An in-process Bedrock Runtime (Converse API) whose answers a test scripts."""

    def __init__(
        self,
        *,
        access_key: str = "AKIDTIERGATETEST",
        secret_key: str = "tiergate-test-secret",
        session_token: str | None = None,
        region: str = "us-east-1",
    ) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.session_token = session_token
        self.region = region
        self.requests: list[Received] = []
        self.rejected: list[str] = []
        self._keys = {access_key: sigv4.Keys(access_key, secret_key, session_token)}
        self._queue: deque[Behaviour] = deque()
        self._input_shapes = converse_rules.load_input_shapes()

    @property
    def url(self) -> str:
        """The endpoint URL, ``http://127.0.0.1:PORT`` (botocore's ``endpoint_url``)."""
        return f"http://127.0.0.1:{self.port}"

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=_MAX_BODY_BYTES)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app.on_response_prepare.append(_add_request_id)
        return app

    def accept(self, access_key: str, secret_key: str, session_token: str | None = None) -> None:
        """Accept requests signed with this credential set too (as AWS accepts every set STS
        issued until it expires); ``access_key`` and its siblings stay the first set."""
        self._keys[access_key] = sigv4.Keys(access_key, secret_key, session_token)

    def enqueue(self, *behaviours: Behaviour) -> None:
        """Script the next requests' answers, one behaviour per accepted request, in order."""
        self._queue.extend(behaviours)

    # -- one request ---------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw_body = await request.read()
        try:
            self._authenticate(request, raw_body)
            operation, model_id = _route(request)
            body = self._validate(operation, model_id, raw_body)
        except _RejectionError as rejection:
            self.rejected.append(str(rejection))
            return rejection.response()
        headers = {name.lower(): value for name, value in request.headers.items()}
        self.requests.append(Received(operation, model_id, body, headers))
        behaviour = self._queue.popleft() if self._queue else _echo(body)
        return await _perform(request, operation, body, behaviour)

    def _validate(self, operation: str, model_id: str, raw_body: bytes) -> dict[str, Any]:
        try:
            body = json.loads(raw_body)
        except ValueError as error:
            raise _RejectionError.bedrock(
                400, "SerializationException", f"Invalid JSON: {error}"
            ) from None
        shape = self._input_shapes[operation]
        found = converse_rules.problems(body, model_id=model_id, input_shape=shape)
        if found:
            raise _RejectionError.bedrock(400, "ValidationException", _joined(found))
        assert isinstance(body, dict)  # problems() refuses anything else
        return body

    # -- SigV4 ---------------------------------------------------------------------------------

    def _authenticate(self, request: web.Request, body: bytes) -> None:
        """Check the request's SigV4 signature as AWS does; raise a _RejectionError when it fails."""
        try:
            sigv4.verify(request, body, keys=self._keys, region=self.region, service=SERVICE)
        except sigv4.SignatureError as error:
            raise _RejectionError.signature(error) from None


# -- request checks --------------------------------------------------------------------------


def _route(request: web.Request) -> tuple[str, str]:
    """The operation and the decoded model id of the raw request path."""
    match = _PATH.fullmatch(request.raw_path.partition("?")[0])
    if match is None or request.method != "POST":
        raise _RejectionError.bedrock(404, "UnknownOperationException", "Unknown operation")
    return match["operation"], unquote(match["model"])


# -- answers ---------------------------------------------------------------------------------


async def _perform(
    request: web.Request, operation: str, body: dict[str, Any], behaviour: Behaviour
) -> web.StreamResponse:
    streaming = operation == "converse-stream"
    match behaviour:
        case Fail(exception_type, message, status):
            return _error_response(status, exception_type, message, _CORAL_BEDROCK)
        case Stall(seconds):
            await asyncio.sleep(seconds)
            return await _perform(request, operation, body, _echo(body))
        case Reset(after_frames, reply) if streaming:
            response = await _stream(request, _frames(body, reply or _echo(body))[:after_frames])
            return await _abort(request, response)
        case Reset():
            return await reset_connection(request)
        case StreamFail(after_frames, exception_type, message, reply) if streaming:
            frames = _frames(body, reply or _echo(body))[:after_frames]
            response = await _stream(request, [*frames, exception_frame(exception_type, message)])
            await response.write_eof()
            return response
        case StreamFail(_, exception_type, message):
            status = _STREAM_EXCEPTION_STATUS.get(exception_type, 500)
            error_type = exception_type[:1].upper() + exception_type[1:]
            return _error_response(status, error_type, message, _CORAL_BEDROCK)
        case Reply() if streaming:
            response = await _stream(request, _frames(body, behaviour), behaviour.delay_s)
            await response.write_eof()
            return response
        case Reply():
            return web.json_response(_converse_answer(body, behaviour))


def _converse_answer(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": reply.content}},
        "stopReason": reply.stop_reason,
        "usage": _usage(body, reply),
        "metrics": {"latencyMs": LATENCY_MS},
    }


async def _stream(
    request: web.Request, frames: list[bytes], delay_s: float = 0.0
) -> web.StreamResponse:
    """Send the headers of a 200 event stream, then ``frames`` one write each."""
    response = web.StreamResponse(status=200, headers={"Content-Type": EVENT_STREAM})
    await response.prepare(request)
    for index, frame in enumerate(frames):
        if delay_s and index:
            await asyncio.sleep(delay_s)
        await response.write(frame)
    return response


async def _abort(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    # Let the frames already written leave, then drop the connection mid-body, like a crash.
    await asyncio.sleep(0.05)
    if request.transport is not None:
        request.transport.abort()
    await asyncio.sleep(1)  # cancelled by aiohttp once it notices the connection is gone
    return response


def _frames(body: dict[str, Any], reply: Reply) -> list[bytes]:
    """The whole ConverseStream answer to ``body``, one frame per event."""
    events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
    for index, block in enumerate(reply.content):
        events += _block_events(index, block, reply)
    events += [
        ("messageStop", {"stopReason": reply.stop_reason}),
        ("metadata", {"usage": _usage(body, reply), "metrics": {"latencyMs": LATENCY_MS}}),
    ]
    return [
        event_frame(name, {**payload, "p": _PADDING[: 1 + 7 * number % len(_PADDING)]})
        for number, (name, payload) in enumerate(events)
    ]


def _block_events(index: int, block: dict[str, Any], reply: Reply) -> list[tuple[str, Any]]:
    start: list[tuple[str, Any]] = []
    deltas: list[dict[str, Any]]
    if "toolUse" in block:
        tool = block["toolUse"]
        tool_start = {"toolUse": {"toolUseId": tool["toolUseId"], "name": tool["name"]}}
        start.append(("contentBlockStart", {"contentBlockIndex": index, "start": tool_start}))
        arguments = json.dumps(tool["input"], separators=(",", ":"))
        deltas = [{"toolUse": {"input": part}} for part in _chunks(arguments, reply.json_chunk)]
    elif "reasoningContent" in block:
        reasoning = block["reasoningContent"]["reasoningText"]
        deltas = [
            {"reasoningContent": {"text": part}}
            for part in _chunks(reasoning["text"], reply.text_chunk)
        ]
        if "signature" in reasoning:
            deltas.append({"reasoningContent": {"signature": reasoning["signature"]}})
    else:
        deltas = [{"text": part} for part in _chunks(block["text"], reply.text_chunk)]
    return [
        *start,
        *(("contentBlockDelta", {"contentBlockIndex": index, "delta": d}) for d in deltas),
        ("contentBlockStop", {"contentBlockIndex": index}),
    ]


def _usage(body: dict[str, Any], reply: Reply) -> dict[str, int]:
    if reply.usage is not None:
        return reply.usage
    prompt = _text_chars([body.get("system", []), body.get("messages", [])]) // 4 + 1
    completion = sum(len(block["text"]) for block in reply.content if "text" in block) // 4 + 1
    return {"inputTokens": prompt, "outputTokens": completion, "totalTokens": prompt + completion}


def _text_chars(node: object) -> int:
    """Characters of every ``text`` member under ``node``."""
    if isinstance(node, list):
        return sum(_text_chars(item) for item in node)
    if not isinstance(node, dict):
        return 0
    return sum(
        len(value) if key == "text" and isinstance(value, str) else _text_chars(value)
        for key, value in node.items()
    )


def _echo(body: dict[str, Any]) -> Reply:
    """The default answer: ``echo: `` and the last user message's last text block."""
    for message in reversed(body.get("messages", [])):
        if message["role"] == "user":
            texts = [block["text"] for block in message["content"] if "text" in block]
            return Reply([{"text": f"echo: {texts[-1] if texts else ''}"}])
    return Reply([{"text": "echo: "}])


def _chunks(text: str, size: int) -> list[str]:
    return [text[start : start + size] for start in range(0, len(text), size)]


def _joined(problems: list[str]) -> str:
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} validation errors detected: " + "; ".join(problems)


def _error_response(status: int, error_type: str, message: str, namespace: str) -> web.Response:
    return web.json_response(
        {"message": message},
        status=status,
        headers={"x-amzn-ErrorType": f"{error_type}:{namespace}"},
    )


async def _add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["x-amzn-RequestId"] = str(uuid.uuid4())
