"""The provider protocol: what the cascade needs from an upstream, and nothing more.

A provider sends one request to one tier's upstream. Retries, timeouts across tiers, breakers
and the cascade itself wrap providers; they are not flags inside them. Transport failures are
raised as :class:`tiergate.errors.UpstreamError` subclasses (mapped in exactly one place per
provider); HTTP error statuses come back as replies for the cascade policy to classify.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol


class Endpoint(StrEnum):
    """The OpenAI API operations the gateway routes; values are paths under ``/v1``."""

    CHAT = "/chat/completions"
    COMPLETIONS = "/completions"
    EMBEDDINGS = "/embeddings"


class ProviderSetupError(ValueError):
    """A tier's provider cannot be set up (a missing package, or no AWS region)."""


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """One attempt's request, already rewritten for the tier (its upstream ``model``).

    ``first_byte_s``: the cascade's limit on the response headers of this attempt (the
    routing's ``latencyMs`` while another tier is left), applied when sooner than the tier's own.
    """

    endpoint: Endpoint
    body: dict[str, Any]
    request_id: str
    first_byte_s: float | None = None


@dataclass(frozen=True, slots=True)
class UpstreamReply:
    """A complete (non-streamed) upstream response, or the error reply of a stream request."""

    status: int
    body: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class Usage:
    """The tokens of one request, the same record whichever provider served it.

    ``prompt`` counts every input token, cached or not (OpenAI's convention); ``cache_read`` and
    ``cache_write`` are the parts of it read from and written to the provider's prompt cache,
    which are priced differently from plain input.
    """

    prompt: int
    completion: int
    cache_read: int = 0
    cache_write: int = 0

    @classmethod
    def from_openai(cls, usage: object) -> Usage | None:
        """Read an OpenAI ``usage`` object; ``None`` when there is none.

        Cache counts come from ``prompt_tokens_details.cached_tokens`` (OpenAI, vLLM) or the
        ``cache_read_input_tokens`` / ``cache_creation_input_tokens`` pair (Anthropic-style
        upstreams and tiergate's Bedrock provider).
        """
        if not isinstance(usage, dict):
            return None
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        return cls(
            prompt=_count(usage.get("prompt_tokens")),
            completion=_count(usage.get("completion_tokens")),
            cache_read=_count(usage.get("cache_read_input_tokens", cached)),
            cache_write=_count(usage.get("cache_creation_input_tokens")),
        )


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class UpstreamStream(Protocol):
    """An upstream SSE stream whose response status was 200.

    Iterating yields whole SSE events (each ending with a blank line) as they arrive; raises
    :class:`tiergate.errors.UpstreamError` when the connection breaks, and
    :class:`tiergate.errors.UpstreamTimeoutError` (phase ``idle``) when the upstream is silent
    for the tier's ``timeouts.idle_s`` between two chunks. ``aclose`` releases the connection
    at once (the upstream sees the request cancelled).
    """

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class Provider(Protocol):
    """An upstream of one tier."""

    name: str

    def supports(self, endpoint: Endpoint) -> bool:
        """Whether this upstream can serve ``endpoint`` at all."""
        ...

    async def send(self, request: UpstreamRequest) -> UpstreamReply:
        """Send a non-streaming request and return the whole response."""
        ...

    async def stream(self, request: UpstreamRequest) -> UpstreamReply | UpstreamStream:
        """Start a streaming request: the stream when the upstream answered 200 with an event
        stream, else its reply (an error, or a 200 that is no stream: the cascade judges it)."""
        ...

    async def close(self) -> None:
        """Release pooled connections."""
        ...
