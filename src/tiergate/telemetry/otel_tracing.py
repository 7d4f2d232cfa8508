"""The OpenTelemetry implementation of :mod:`tiergate.telemetry.tracing` (the ``tracing`` extra).

Each :class:`OtelTracing` owns its ``TracerProvider``: the SDK's global provider is never set,
so two apps (or two tests) in one process do not share or overwrite each other's export.
Spans are exported over OTLP/HTTP (protobuf) by a ``BatchSpanProcessor``, whose own thread
does the blocking HTTP work: ending a span only appends it to a bounded queue, and a collector
that is down or slow costs the request path nothing (the SDK logs the failed export and drops
the batch; a full queue drops new spans, also logged).

No context is attached to the ambient (contextvars) context: parents are passed explicitly,
so concurrent requests on one event loop never see each other's spans.

Every string handed to the SDK (span names, attribute values, status descriptions) is made
encodable first (:func:`encodable`): the exporter encodes a whole batch at once, and one
string it cannot encode as UTF-8 (a lone surrogate, which is how a byte that is not UTF-8
arrives in a header) would make it drop every span of the batch. Such a string is exported
with the character escaped (``\udcff``) instead.
"""

from __future__ import annotations

import asyncio
import time

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tiergate._version import __version__
from tiergate.providers.base import Usage
from tiergate.telemetry import genai
from tiergate.telemetry.tracing import (
    TRACEPARENT_HEADER,
    TRACESTATE_HEADER,
    AttemptSpan,
    RequestSpan,
    TracingSettings,
)

_SCOPE = "tiergate.gateway"
_MAX_EXPORT_BATCH = 512  # the SDK's default batch size


def encodable(text: str) -> str:
    """``text``, with any character that UTF-8 cannot encode (a lone surrogate) escaped."""
    if text.isascii():  # nearly always: one fast check, no copy
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _encodable_attributes(attributes: genai.Attributes) -> genai.Attributes:
    for name, value in attributes.items():
        if isinstance(value, str):
            attributes[name] = encodable(value)
        elif isinstance(value, tuple):
            attributes[name] = tuple(encodable(item) for item in value)
    return attributes


class OtelTracing:
    """Request and attempt spans exported to an OTLP/HTTP collector or to Langfuse."""

    def __init__(self, settings: TracingSettings) -> None:
        self.settings = settings
        exporter = OTLPSpanExporter(
            endpoint=settings.endpoint,
            headers=settings.export_headers(),
            timeout=settings.export_timeout_s,
            compression=(
                Compression.Gzip if settings.compression == "gzip" else Compression.NoCompression
            ),
        )
        resource = Resource.create(
            {SERVICE_NAME: settings.service_name, SERVICE_VERSION: __version__}
        )
        # Sampler given, not read from OTEL_TRACES_SAMPLER: record every request, except that
        # a client's W3C "not sampled" flag is honoured (its trace would be incomplete anyway).
        self._provider = TracerProvider(
            sampler=ParentBased(ALWAYS_ON), resource=resource, shutdown_on_exit=False
        )
        self._provider.add_span_processor(
            BatchSpanProcessor(
                exporter,
                max_queue_size=settings.max_queue_size,
                schedule_delay_millis=settings.schedule_delay_s * 1000,
                max_export_batch_size=min(_MAX_EXPORT_BATCH, settings.max_queue_size),
            )
        )
        self._tracer = self._provider.get_tracer(_SCOPE, __version__)
        self._propagator = TraceContextTextMapPropagator()
        self._closed = False

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
        """Open a request's span; see :meth:`tiergate.telemetry.tracing.Tracing.start_request`."""
        parent = Context()
        if traceparent:
            carrier = {TRACEPARENT_HEADER: traceparent}
            if tracestate:
                carrier[TRACESTATE_HEADER] = tracestate
            # A malformed traceparent leaves the empty context as it is: a new trace.
            parent = self._propagator.extract(carrier, context=parent)
        start_ns = time.time_ns() if start_time_ns is None else start_time_ns
        attributes = genai.request_attributes(
            operation=operation,
            request_id=request_id,
            model=model,
            stage=stage,
            key_id=key_id,
            team=team,
            project=project,
            stream=stream,
            max_tokens=max_tokens,
            temperature=temperature,
        )
        span = self._tracer.start_span(
            encodable(genai.span_name(operation, model)),
            context=parent,
            kind=SpanKind.SERVER,
            attributes=_encodable_attributes(attributes),
            start_time=start_ns,
        )
        return _OtelRequestSpan(
            self._tracer,
            span,
            langfuse=self.settings.langfuse,
            operation=operation,
            request_id=request_id,
            model=model,
            stage=stage,
            key_id=key_id,
            team=team,
            project=project,
            start_ns=start_ns,
        )

    def force_flush(self) -> bool:
        """Export every ended span now; blocks (from async code, run it in a thread)."""
        return self._provider.force_flush()

    def shutdown(self) -> None:
        """Export what is left and stop the export thread; a second call does nothing."""
        if self._closed:
            return
        self._closed = True
        self._provider.shutdown()

    async def aclose(self) -> None:
        """:meth:`shutdown` in a worker thread, so the event loop keeps running meanwhile."""
        await asyncio.to_thread(self.shutdown)


class _OtelAttemptSpan:
    __slots__ = ("_span", "ended", "provider", "tier", "upstream_model")

    def __init__(self, span: Span, *, tier: str, provider: str, upstream_model: str) -> None:
        self._span = span
        self.tier = tier
        self.provider = provider
        self.upstream_model = upstream_model
        self.ended = False

    def finish(self, *, outcome: str, status: int | None) -> None:
        if self.ended:
            return
        self.ended = True
        attributes = genai.attempt_end_attributes(outcome=outcome, status=status)
        self._span.set_attributes(_encodable_attributes(attributes))
        if outcome != "ok":
            self._span.set_status(Status(StatusCode.ERROR, encodable(outcome)))
        self._span.end()


class _OtelRequestSpan:
    __slots__ = (
        "_attempts",
        "_context",
        "_ended",
        "_key_id",
        "_langfuse",
        "_model",
        "_operation",
        "_project",
        "_request_id",
        "_span",
        "_stage",
        "_start_ns",
        "_team",
        "_tracer",
    )

    def __init__(
        self,
        tracer: Tracer,
        span: Span,
        *,
        langfuse: bool,
        operation: str,
        request_id: str,
        model: str,
        stage: str | None,
        key_id: str | None,
        team: str | None,
        project: str | None,
        start_ns: int,
    ) -> None:
        self._tracer = tracer
        self._span = span
        self._context = set_span_in_context(span, Context())
        self._langfuse = langfuse
        self._operation = operation
        self._request_id = request_id
        self._model = model
        self._stage = stage
        self._key_id = key_id
        self._team = team
        self._project = project
        self._start_ns = start_ns
        self._attempts: list[_OtelAttemptSpan] = []
        self._ended = False

    def attempt(self, tier: str, provider: str, upstream_model: str) -> AttemptSpan:
        attributes = genai.attempt_attributes(
            operation=self._operation,
            index=len(self._attempts) + 1,
            tier=tier,
            provider=provider,
            upstream_model=upstream_model,
        )
        if self._langfuse:
            attributes |= genai.langfuse_span_attributes()
        span = self._tracer.start_span(
            encodable(genai.span_name(self._operation, upstream_model)),
            context=self._context,
            kind=SpanKind.CLIENT,
            attributes=_encodable_attributes(attributes),
        )
        attempt = _OtelAttemptSpan(
            span, tier=tier, provider=provider, upstream_model=upstream_model
        )
        self._attempts.append(attempt)
        return attempt

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
        if self._ended:
            return
        self._ended = True
        for attempt in self._attempts:
            # The gateway ends its attempts; one left open (a cancelled request) ends here,
            # so that the trace has no span without an end.
            attempt.finish(outcome="cancelled", status=None)
        served = next((a for a in reversed(self._attempts) if a.tier == tier), None)
        end = _encodable_attributes(
            genai.request_end_attributes(
                tier=tier,
                provider=None if served is None else served.provider,
                upstream_model=None if served is None else served.upstream_model,
                attempts=len(self._attempts),
                status=status,
                usage=usage,
                cost_usd=cost_usd,
                ttft_s=ttft_s,
                error=error,
            )
        )
        self._span.set_attributes(end)
        if self._langfuse:
            self._span.set_attributes(
                _encodable_attributes(
                    genai.langfuse_generation_attributes(
                        model=self._model if served is None else served.upstream_model,
                        tier=tier,
                        stage=self._stage,
                        request_id=self._request_id,
                        key_id=self._key_id,
                        team=self._team,
                        project=self._project,
                        usage=usage,
                        cost_usd=cost_usd,
                        start_time_ns=self._start_ns,
                        ttft_s=ttft_s,
                    )
                )
            )
        if genai.is_failure(status, error):
            self._span.set_status(Status(StatusCode.ERROR, encodable(error or f"HTTP {status}")))
        self._span.end()
