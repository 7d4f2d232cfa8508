"""Request traces: what the gateway calls, and the no-op used when tracing is not configured.

The gateway opens one :class:`RequestSpan` per client request and one :class:`AttemptSpan` per
upstream attempt; neither exposes OpenTelemetry types, so the gateway imports this module
whether or not the ``tracing`` extra is installed. :func:`create_tracing` builds the
OpenTelemetry implementation (``tiergate.telemetry.otel_tracing``) only when settings are
given, and :class:`NoTracing` otherwise: it allocates nothing per request.

Spans carry the OpenTelemetry GenAI attributes (model, tokens) and tiergate's own (tier, cost,
stage, key id, team, project); never the key itself, never prompt or response content.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, Protocol
from urllib.parse import urlsplit

from tiergate.providers.base import Usage

# The header with which clients name the workflow stage of a request (trace name, report group).
STAGE_HEADER = "x-tiergate-stage"
# W3C Trace Context headers, continued by the request span.
TRACEPARENT_HEADER = "traceparent"
TRACESTATE_HEADER = "tracestate"

LANGFUSE_OTLP_PATH = "/api/public/otel/v1/traces"
# Langfuse's direct-exporter header; without it ingestion can lag by minutes (reference page).
LANGFUSE_INGESTION_VERSION = "4"


class TracingSetupError(ValueError):
    """Tracing settings are invalid, or the ``tracing`` extra is not installed."""


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """Where and how spans are exported: a plain OTLP/HTTP collector, or Langfuse.

    Give exactly one of ``otlp_endpoint`` (the full URL, such as
    ``http://collector:4318/v1/traces``) or ``langfuse_host`` (such as
    ``https://cloud.langfuse.com``) with ``public_key`` and ``secret_key``. ``headers`` are
    added to every export request (a collector's API key, say); they and the secret key are
    left out of ``repr``. ``export_timeout_s`` bounds one export, retries included, and so how
    long :meth:`Tracing.shutdown` can wait on a collector that does not answer.
    """

    otlp_endpoint: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    service_name: str = "tiergate"
    langfuse_host: str | None = None
    public_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    compression: Literal["gzip", "none"] = "gzip"
    export_timeout_s: float = 10.0
    schedule_delay_s: float = 5.0
    max_queue_size: int = 2048

    def __post_init__(self) -> None:
        if (self.otlp_endpoint is None) == (self.langfuse_host is None):
            raise TracingSetupError("give exactly one of otlp_endpoint and langfuse_host")
        if self.langfuse_host is not None and not (self.public_key and self.secret_key):
            raise TracingSetupError("Langfuse export needs public_key and secret_key")
        _check_url(self.endpoint)
        if not self.service_name:
            raise TracingSetupError("service_name must not be empty")
        if self.compression not in ("gzip", "none"):
            raise TracingSetupError(f"compression must be gzip or none, not {self.compression!r}")
        if self.export_timeout_s <= 0 or self.schedule_delay_s <= 0:
            raise TracingSetupError("export_timeout_s and schedule_delay_s must be positive")
        if self.max_queue_size < 1:
            raise TracingSetupError("max_queue_size must be at least 1")
        # Frozen means frozen: a caller's later change to its dict must not reach the exporter.
        object.__setattr__(self, "headers", MappingProxyType(dict(self.headers)))

    @property
    def langfuse(self) -> bool:
        """Whether spans go to Langfuse (and so carry its ``langfuse.*`` attributes)."""
        return self.langfuse_host is not None

    @property
    def endpoint(self) -> str:
        """The URL export requests are POSTed to."""
        if self.langfuse_host is not None:
            return self.langfuse_host.rstrip("/") + LANGFUSE_OTLP_PATH
        assert self.otlp_endpoint is not None  # __post_init__ requires one of the two
        return self.otlp_endpoint

    def export_headers(self) -> dict[str, str]:
        """The headers of every export request: ``headers``, plus Langfuse's auth and version."""
        headers = dict(self.headers)
        if self.langfuse_host is not None:
            token = base64.b64encode(f"{self.public_key}:{self.secret_key}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
            headers["x-langfuse-ingestion-version"] = LANGFUSE_INGESTION_VERSION
        return headers


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TracingSetupError(f"trace export URL must be http(s)://host[:port]/..., not {url!r}")


class AttemptSpan(Protocol):
    """One attempt on one tier's upstream, a child of its request's span."""

    def finish(self, *, outcome: str, status: int | None) -> None:
        """End the attempt: ``outcome`` is ``ok`` or the fallback reason; ``status`` the HTTP
        status of the upstream's reply, ``None`` when there was none (a transport failure)."""
        ...


class RequestSpan(Protocol):
    """One client request, from arrival to the last byte of its response."""

    def attempt(self, tier: str, provider: str, upstream_model: str) -> AttemptSpan:
        """Open the span of the next attempt, on ``tier`` (its ``provider`` kind and model)."""
        ...

    def finish(
        self,
        *,
        tier: str | None,
        status: int,
        usage: Usage | None,
        cost_usd: float,
        ttft_s: float | None,
        error: str | None,
    ) -> None:
        """End the request: the tier that served it (``None``: none did), the status sent to
        the client, tokens, cost, time to first token and a short error type when it failed.
        Attempts still open are ended as ``cancelled``. A second call does nothing."""
        ...


class Tracing(Protocol):
    """Opens request spans and owns their export."""

    def start_request(
        self,
        *,
        request_id: str,
        model: str,
        stage: str | None,
        key_id: str | None,
        team: str | None,
        project: str | None,
        traceparent: str | None,
        stream: bool,
        max_tokens: int | None,
        temperature: float | None,
        start_time_ns: int | None = None,
        tracestate: str | None = None,
        operation: str = "chat",
    ) -> RequestSpan:
        """Open a request's span, continuing the client's W3C trace when ``traceparent`` is
        valid (a new trace otherwise). ``start_time_ns`` is the arrival time (epoch ns, default
        now); ``operation`` the GenAI operation (``chat``, ``text_completion``, ``embeddings``)."""
        ...

    def force_flush(self) -> bool:
        """Export every ended span now; blocks (from async code, run it in a thread)."""
        ...

    def shutdown(self) -> None:
        """Export what is left and stop; later spans are dropped, a second call does nothing.

        Blocks while the rest is exported: when the collector does not answer, each batch of up
        to 512 spans takes at most ``export_timeout_s``, and the whole about 30 s at most (the
        SDK's bound). From async code use :meth:`aclose`."""
        ...

    async def aclose(self) -> None:
        """:meth:`shutdown` in a worker thread, so the event loop keeps running meanwhile."""
        ...


class _NoAttemptSpan:
    __slots__ = ()

    def finish(self, *, outcome: str, status: int | None) -> None:
        return None


class _NoRequestSpan:
    __slots__ = ("_attempt",)

    def __init__(self) -> None:
        self._attempt = _NoAttemptSpan()

    def attempt(self, tier: str, provider: str, upstream_model: str) -> AttemptSpan:
        return self._attempt

    def finish(
        self,
        *,
        tier: str | None,
        status: int,
        usage: Usage | None,
        cost_usd: float,
        ttft_s: float | None,
        error: str | None,
    ) -> None:
        return None


class NoTracing:
    """Tracing turned off: every request gets the same stateless span, which records nothing."""

    __slots__ = ("_request",)

    def __init__(self) -> None:
        self._request = _NoRequestSpan()

    def start_request(
        self,
        *,
        request_id: str,
        model: str,
        stage: str | None,
        key_id: str | None,
        team: str | None,
        project: str | None,
        traceparent: str | None,
        stream: bool,
        max_tokens: int | None,
        temperature: float | None,
        start_time_ns: int | None = None,
        tracestate: str | None = None,
        operation: str = "chat",
    ) -> RequestSpan:
        return self._request

    def force_flush(self) -> bool:
        return True

    def shutdown(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def create_tracing(settings: TracingSettings | None) -> Tracing:
    """The OpenTelemetry tracing for ``settings``, or :class:`NoTracing` when there are none.

    Raises :class:`TracingSetupError` when settings are given but the ``tracing`` extra
    (OpenTelemetry SDK and OTLP/HTTP exporter) is not installed.
    """
    if settings is None:
        return NoTracing()
    try:
        # Imported on use: the extra is optional, and the SDK takes a third of a second to load.
        from tiergate.telemetry.otel_tracing import OtelTracing  # noqa: PLC0415
    except ImportError as exc:
        raise TracingSetupError(
            "tracing is configured but OpenTelemetry is not installed: "
            "pip install 'tiergate[tracing]'"
        ) from exc
    return OtelTracing(settings)
