"""How much a request can make an upstream generate: its output limit times its choices.

Budgets reserve, and rate limits count, this bound before any upstream is called, so it must be
what the upstream will apply, not what a lenient reading of the body guesses. Engines parse
bodies leniently (vLLM's pydantic models take ``"100000"`` and ``100000.0`` as ``100000``), so
a field the gateway did not read as an integer could still be obeyed upstream. Hence every
field that sizes the output is checked here, as OpenAI checks it: a JSON integer in range, else
a 400 naming the field. What is forwarded is then exactly what was counted.

* Output limit: chat takes ``max_completion_tokens`` or ``max_tokens`` (the larger when both are
  given: upstreams differ on which wins); ``/v1/completions`` has ``max_tokens`` only (an engine
  ignores ``max_completion_tokens`` there). A request without one gets the fleet's default
  written into it. Embeddings generate nothing.
* Choices: ``n`` (chat and completions) and ``best_of`` (completions: ``best_of >= n``
  sequences are generated, ``n`` returned).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from tiergate.gateway.inbound import ClientRequest
from tiergate.gateway.openai_errors import OpenAIError
from tiergate.providers import Endpoint

# OpenAI's own bounds: n up to 128, best_of up to 20 (vLLM accepts more; a bound keeps one
# request from reserving a budget's worth by accident).
MAX_CHOICES = {"n": 128, "best_of": 20}
# Far above any model's context; below it the arithmetic of every limiter is exact.
MAX_OUTPUT_TOKENS = 2**31 - 1

_LIMIT_FIELDS: dict[Endpoint, tuple[str, ...]] = {
    Endpoint.CHAT: ("max_completion_tokens", "max_tokens"),
    Endpoint.COMPLETIONS: ("max_tokens",),
    Endpoint.EMBEDDINGS: (),
}
_CHOICE_FIELDS: dict[Endpoint, tuple[str, ...]] = {
    Endpoint.CHAT: ("n",),
    Endpoint.COMPLETIONS: ("n", "best_of"),
    Endpoint.EMBEDDINGS: (),
}


@dataclass(frozen=True, slots=True)
class GenerationBound:
    """The most output tokens per choice (``limit``) and the number of sequences generated."""

    limit: int
    choices: int
    default_written: bool  # the request had no output limit: ``limit`` is the fleet's default

    @property
    def tokens(self) -> int:
        """The most output tokens the whole request can produce."""
        return self.limit * self.choices


def generation_bound(request: ClientRequest, default_max_tokens: int) -> GenerationBound:
    """The request's bound; :class:`OpenAIError` 400 naming a field that is not a valid integer."""
    body = request.body
    limits = [
        value
        for name in _LIMIT_FIELDS[request.endpoint]
        if (value := _integer(body, name, 1, MAX_OUTPUT_TOKENS)) is not None
    ]
    choices = [
        value
        for name in _CHOICE_FIELDS[request.endpoint]
        if (value := _integer(body, name, 1, MAX_CHOICES[name])) is not None
    ]
    if request.endpoint is Endpoint.EMBEDDINGS:
        return GenerationBound(0, 1, default_written=False)
    if limits:
        return GenerationBound(max(limits), max(choices, default=1), default_written=False)
    return GenerationBound(default_max_tokens, max(choices, default=1), default_written=True)


def bounded(request: ClientRequest, bound: GenerationBound) -> ClientRequest:
    """``request`` carrying its bound's output limit, so that the upstream applies it."""
    if not bound.default_written:
        return request
    return replace(request, body={**request.body, "max_tokens": bound.limit})


def _integer(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    # bool is an int in Python, not in JSON; 100.0 and "100" are refused as OpenAI refuses them.
    if not isinstance(value, int) or isinstance(value, bool):
        raise OpenAIError(
            400,
            f"Invalid type for '{name}': expected an integer, but got {_kind(value)} instead.",
            param=name,
            code="invalid_type",
        )
    if not low <= value <= high:
        raise OpenAIError(
            400,
            f"Invalid '{name}': {value} is out of range; expected {low} to {high}.",
            param=name,
            code="integer_out_of_range",
        )
    return value


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"
