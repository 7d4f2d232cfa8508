"""What the trace tests send: a gateway's calls for one request, and a look-up of spans."""

from __future__ import annotations

from tests.telemetry.otlp_receiver import ReceivedSpan
from tiergate.providers.base import Usage
from tiergate.telemetry.tracing import RequestSpan, Tracing

START_NS = 1_752_384_000_000_000_000


def start(tracing: Tracing, request_id: str = "req-1", **overrides: object) -> RequestSpan:
    values: dict[str, object] = {
        "request_id": request_id,
        "model": "llama-3.1-8b",
        "stage": "summarize",
        "key_id": "key-7",
        "team": "search",
        "project": "answers",
        "traceparent": None,
        "stream": True,
        "max_tokens": 256,
        "temperature": 0.2,
    }
    values.update(overrides)
    return tracing.start_request(**values)  # type: ignore[arg-type]


def serve_after_fallback(request: RequestSpan) -> None:
    """The first tier answers 503, the second serves the request."""
    first = request.attempt("onprem", "openai-compatible", "meta-llama/Llama-3.1-8B-Instruct")
    first.finish(outcome="status_503", status=503)
    second = request.attempt("bedrock", "bedrock", "meta.llama3-1-8b-instruct-v1:0")
    second.finish(outcome="ok", status=200)
    request.finish(
        tier="bedrock",
        status=200,
        usage=Usage(prompt=1200, completion=80, cache_read=1000, cache_write=100),
        cost_usd=0.00042,
        ttft_s=0.35,
        error=None,
    )


def by_name(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {span.name: span for span in spans}
