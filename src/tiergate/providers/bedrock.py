"""The ``bedrock`` provider: Amazon Bedrock's Converse and ConverseStream behind the OpenAI API.

Requests are translated by :mod:`tiergate.providers.converse`, signed with SigV4 by botocore
(:mod:`tiergate.providers.aws_auth`) and sent on a pooled aiohttp session. Streams arrive as AWS
event-stream frames, decoded by botocore's own parser and re-emitted as OpenAI SSE chunks.
Bedrock's errors are mapped here, in one place, to OpenAI-style error replies whose status the
cascade judges like any other tier's; an exception inside a stream before any content counts
as such a reply (the cascade may still fall back), after that as a failed stream.

The endpoint is ``https://bedrock-runtime.{region}.amazonaws.com`` unless the tier's
``baseUrl``, ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` or ``AWS_ENDPOINT_URL`` says otherwise
(private endpoints, tests).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any, cast
from urllib.parse import quote

import aiohttp
import orjson
from botocore.eventstream import EventStreamBuffer, EventStreamMessage, ParserError
from botocore.session import Session
from yarl import URL

from tiergate import __version__
from tiergate.errors import TranslationError, UpstreamResetError, UpstreamStreamError
from tiergate.providers.aws_auth import Signer, resolve_region
from tiergate.providers.base import Endpoint, UpstreamReply, UpstreamRequest, UpstreamStream
from tiergate.providers.converse import from_converse, to_converse
from tiergate.providers.converse_stream import DONE, ChunkWriter, StreamProtocolError
from tiergate.providers.transport import body_chunks, pooled_session, post, read_body
from tiergate.spec import Tier

log = logging.getLogger(__name__)

JSON = "application/json"

# Bedrock exception -> (status the client sees, OpenAI error type). Throttling and a model
# that is not ready are rate limits (another tier may serve); AWS authentication failures are
# the gateway's configuration, not the client's fault: a bad gateway.
ERRORS: dict[str, tuple[int, str]] = {
    "ValidationException": (400, "invalid_request_error"),
    "AccessDeniedException": (403, "permission_error"),
    "ResourceNotFoundException": (404, "not_found_error"),
    "ThrottlingException": (429, "rate_limit_error"),
    "ModelNotReadyException": (429, "rate_limit_error"),
    "ServiceQuotaExceededException": (429, "rate_limit_error"),
    "InternalServerException": (500, "server_error"),
    "ModelErrorException": (502, "upstream_error"),
    "ModelStreamErrorException": (502, "upstream_error"),
    "ServiceUnavailableException": (503, "server_error"),
    "ModelTimeoutException": (504, "timeout_error"),
    "UnrecognizedClientException": (502, "upstream_error"),
    "InvalidSignatureException": (502, "upstream_error"),
    "IncompleteSignatureException": (502, "upstream_error"),
    "MissingAuthenticationTokenException": (502, "upstream_error"),
    "ExpiredTokenException": (502, "upstream_error"),
}
# An unnamed error, by Bedrock's HTTP status.
STATUSES = {400: 400, 401: 502, 403: 403, 404: 404, 408: 504, 424: 502, 429: 429}
STATUSES |= {500: 500, 503: 503}
# Wording of Bedrock's (and its models') context-window overflows.
CONTEXT_OVERFLOW = (
    "too many tokens",
    "input is too long",
    "prompt is too long",
    "too many input tokens",
    "context window",
    "context length",
    "maximum context",
)


class BedrockProvider:
    """A tier served by Amazon Bedrock's Converse API."""

    def __init__(
        self,
        tier: Tier,
        *,
        session: Session | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.name = tier.name
        self._model = tier.model
        self._cap = tier.max_tokens
        self._timeouts = tier.timeouts
        session = session or Session()
        region = resolve_region(tier.name, tier.region, session, environ)
        self._signer = Signer(tier.name, session, service="bedrock", region=region)
        base = (
            tier.base_url
            or environ.get("AWS_ENDPOINT_URL_BEDROCK_RUNTIME")
            or environ.get("AWS_ENDPOINT_URL")
            or f"https://bedrock-runtime.{region}.amazonaws.com"
        ).rstrip("/")
        # The model id (maybe an ARN) is one path segment: ':' and '/' percent-encoded, and the
        # URL sent exactly as signed.
        path = f"{base}/model/{quote(tier.model, safe='')}"
        self._urls = {False: f"{path}/converse", True: f"{path}/converse-stream"}
        self._session: aiohttp.ClientSession | None = None

    def supports(self, endpoint: Endpoint) -> bool:
        return endpoint is Endpoint.CHAT

    async def send(self, request: UpstreamRequest) -> UpstreamReply:
        try:
            converse = to_converse(request.body, max_tokens_cap=self._cap)
        except TranslationError as exc:
            return _reply(400, exc.message, "invalid_request_error", exc.param, None)
        response = await self._post(converse, stream=False, first_byte_s=request.first_byte_s)
        body = await read_body(self.name, response)
        if response.status != 200:
            return _error_reply(response, body)
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _reply(502, "Bedrock sent a response that is not JSON.", "upstream_error")
        completion = from_converse(
            answer,
            model=self._model,
            completion_id=f"chatcmpl-{request.request_id}",
            created=int(time.time()),
        )
        return UpstreamReply(200, orjson.dumps(completion), JSON)

    async def stream(self, request: UpstreamRequest) -> UpstreamReply | UpstreamStream:
        try:
            converse = to_converse(request.body, max_tokens_cap=self._cap)
        except TranslationError as exc:
            return _reply(400, exc.message, "invalid_request_error", exc.param, None)
        response = await self._post(converse, stream=True, first_byte_s=request.first_byte_s)
        if response.status != 200:
            return _error_reply(response, await read_body(self.name, response))
        writer = ChunkWriter(
            model=self._model,
            completion_id=f"chatcmpl-{request.request_id}",
            created=int(time.time()),
        )
        stream = _EventStream(self.name, response, writer, self._timeouts.idle_s)
        return await stream.open()

    async def _post(
        self, converse: dict[str, Any], *, stream: bool, first_byte_s: float | None
    ) -> aiohttp.ClientResponse:
        if self._session is None:  # created on first use, inside the loop that drives it
            self._session = pooled_session(self._timeouts, decompress=True)
        url = self._urls[stream]
        body = orjson.dumps(converse)
        accept = "application/vnd.amazon.eventstream" if stream else JSON
        headers = await self._signer.sign(url, body, {"Content-Type": JSON, "Accept": accept})
        headers["User-Agent"] = f"tiergate/{__version__}"
        return await post(
            self._session,
            URL(url, encoded=True),
            body,
            headers,
            tier=self.name,
            timeouts=self._timeouts,
            first_byte_s=first_byte_s,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _EventStream:
    """A ConverseStream response as OpenAI SSE events.

    ``open`` reads up to the first content: an exception event before it becomes an error
    reply (nothing reached the client yet, so the cascade may still fall back). Later
    exceptions raise :class:`UpstreamStreamError`; the relay ends the client's stream with an
    explicit error event.
    """

    def __init__(
        self, tier: str, response: aiohttp.ClientResponse, writer: ChunkWriter, idle_s: float
    ) -> None:
        self._tier = tier
        self._idle_s = idle_s
        self._response = response
        self._writer = writer
        self._opening: list[bytes] = []
        self._events: AsyncGenerator[bytes] = self._translate()
        self._finished = False

    async def open(self) -> UpstreamReply | _EventStream:
        try:
            async for event in self._events:
                self._opening.append(event)
                if self._writer.content_started:
                    break
        except _ExceptionEventError as exc:
            return exc.reply
        except BaseException:
            await self._events.aclose()
            raise
        return self

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._relay()

    async def _relay(self) -> AsyncIterator[bytes]:
        for event in self._opening:
            yield event
        self._opening.clear()
        async for event in self._events:
            yield event

    async def _translate(self) -> AsyncGenerator[bytes]:
        frames = EventStreamBuffer()
        try:
            try:
                async for data in body_chunks(self._tier, self._response, self._idle_s):
                    frames.add_data(data)
                    for message in frames:
                        event = self._event(message)
                        if event:
                            yield event
            except (ParserError, StreamProtocolError, orjson.JSONDecodeError) as exc:
                detail = f"malformed Bedrock event stream: {exc}"
                raise UpstreamStreamError(self._tier, detail, 502) from exc
            if not self._writer.stopped:
                raise UpstreamResetError(self._tier, "the event stream ended before messageStop")
            self._finished = True
            self._response.release()
        finally:
            if not self._finished:
                # Closing (not releasing) drops the connection: Bedrock sees the request end.
                self._response.close()
        yield DONE

    def _event(self, message: EventStreamMessage) -> bytes:
        # botocore-stubs annotates ``headers`` as int; botocore gives a dict of header values.
        headers = cast("dict[str, Any]", message.headers)
        kind = headers.get(":message-type")
        if kind == "event":
            payload = orjson.loads(message.payload) if message.payload else {}
            return self._writer.event(headers.get(":event-type", ""), payload)
        if kind == "exception":
            name = str(headers.get(":exception-type", "InternalServerException"))
            name = name[:1].upper() + name[1:]  # in-stream types are camelCase
            text = _message(message.payload)
        else:  # an event-stream level error
            name = str(headers.get(":error-code", "InternalServerException"))
            text = str(headers.get(":error-message", ""))
        raise _ExceptionEventError(self._tier, _openai_error(name, 500, text, None))

    async def aclose(self) -> None:
        await self._events.aclose()
        if not self._finished:
            self._response.close()


class _ExceptionEventError(UpstreamStreamError):
    """An exception event in a stream, with the error reply it stands for."""

    def __init__(self, tier: str, reply: UpstreamReply) -> None:
        error = orjson.loads(reply.body)["error"]
        super().__init__(tier, error["message"], reply.status)
        self.reply = reply


def _error_reply(response: aiohttp.ClientResponse, body: bytes) -> UpstreamReply:
    """Bedrock's error response as an OpenAI error reply."""
    name = response.headers.get("x-amzn-ErrorType", "").split(":", 1)[0]
    if not name:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        kind = parsed.get("__type") if isinstance(parsed, dict) else None
        name = kind.rsplit("#", 1)[-1] if isinstance(kind, str) else ""
    return _openai_error(
        name, response.status, _message(body), response.headers.get("x-amzn-RequestId")
    )


def _openai_error(name: str, status: int, text: str, request_id: str | None) -> UpstreamReply:
    """The OpenAI error reply for Bedrock error ``name`` (or, unnamed, its HTTP ``status``)."""
    mapped, error_type = ERRORS.get(name) or (STATUSES.get(status, 502), "")
    code: str | None = name or None
    param = None
    if mapped == 400 and any(words in text.lower() for words in CONTEXT_OVERFLOW):
        code, param = "context_length_exceeded", "messages"
    elif mapped == 429:
        code = "rate_limit_exceeded"
    detail = f"Bedrock {name or status}: {text}"
    if request_id:
        detail += f" (request id {request_id})"
    return _reply(mapped, detail, error_type or _error_type(mapped), param, code)


def _message(body: bytes) -> str:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")[:500]
    if isinstance(parsed, dict):
        text = parsed.get("message") or parsed.get("Message")
        if isinstance(text, str):
            return text
    return ""


def _error_type(status: int) -> str:
    if status == 429:
        return "rate_limit_error"
    return "invalid_request_error" if status < 500 else "upstream_error"


def _reply(
    status: int,
    message: str,
    error_type: str,
    param: str | None = None,
    code: str | None = None,
) -> UpstreamReply:
    error = {"message": message, "type": error_type, "param": param, "code": code}
    return UpstreamReply(status, orjson.dumps({"error": error}), JSON)
