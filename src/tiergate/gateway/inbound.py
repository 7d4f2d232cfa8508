"""Reading and validating a client's request body before anything reaches an upstream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from tiergate.gateway.openai_errors import OpenAIError
from tiergate.providers import Endpoint

# The field each endpoint cannot do without, and what it must be.
_REQUIRED: dict[Endpoint, tuple[str, type | tuple[type, ...], str]] = {
    Endpoint.CHAT: ("messages", list, "a non-empty array of messages"),
    Endpoint.COMPLETIONS: ("prompt", (str, list), "a string or an array"),
    Endpoint.EMBEDDINGS: ("input", (str, list), "a string or an array"),
}


@dataclass(frozen=True, slots=True)
class ClientRequest:
    """A validated client request."""

    endpoint: Endpoint
    body: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool

    def for_tier(self, upstream_model: str) -> dict[str, Any]:
        """The body to send to a tier: its model id, and usage always requested on streams."""
        body = dict(self.body)
        body["model"] = upstream_model
        if self.stream:
            options = body.get("stream_options")
            options = dict(options) if isinstance(options, dict) else {}
            options["include_usage"] = True
            body["stream_options"] = options
        return body


def parse_request(endpoint: Endpoint, raw: bytes) -> ClientRequest:
    """Parse and check ``raw``; raise :class:`OpenAIError` (400) naming the faulty field."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise OpenAIError(
            400, f"We could not parse the JSON body of your request: {exc}", code="invalid_json"
        ) from exc
    if not isinstance(body, dict):
        raise OpenAIError(400, "The request body must be a JSON object.", code="invalid_json")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise OpenAIError(
            400, "You must provide a model parameter (a non-empty string).", param="model"
        )
    field, kind, expected = _REQUIRED[endpoint]
    value = body.get(field)
    if not isinstance(value, kind) or (endpoint is Endpoint.CHAT and not value):
        problem = "is missing" if value is None else "is invalid"
        raise OpenAIError(400, f"'{field}' {problem}: expected {expected}.", param=field)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise OpenAIError(400, "'stream' must be a boolean.", param="stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise OpenAIError(400, "'stream_options' must be an object.", param="stream_options")
    include_usage = bool(options.get("include_usage")) if options else False
    streaming = bool(stream) and endpoint is not Endpoint.EMBEDDINGS
    return ClientRequest(endpoint, body, model, streaming, include_usage)
