"""Request and attempt spans as a collector receives them over OTLP/HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tests.telemetry.conftest import close, settings_for
from tests.telemetry.helpers import START_NS, by_name, serve_after_fallback, start
from tests.telemetry.otlp_receiver import CLIENT, SERVER, STATUS_ERROR, STATUS_UNSET, OtlpReceiver
from tiergate.providers.base import Usage
from tiergate.telemetry.tracing import Tracing, TracingSettings


async def test_a_request_with_a_fallback_exports_one_span_per_request_and_attempt(
    receiver: OtlpReceiver, tracing: Callable[[TracingSettings], Tracing]
) -> None:
    traced = tracing(settings_for(receiver))
    serve_after_fallback(start(traced, start_time_ns=START_NS))
    await close(traced)

    spans = by_name(receiver.spans)
    assert sorted(spans) == [
        "chat llama-3.1-8b",
        "chat meta-llama/Llama-3.1-8B-Instruct",
        "chat meta.llama3-1-8b-instruct-v1:0",
    ]
    request = spans["chat llama-3.1-8b"]
    failed = spans["chat meta-llama/Llama-3.1-8B-Instruct"]
    served = spans["chat meta.llama3-1-8b-instruct-v1:0"]

    # One trace: the request span is its root, both attempts are its children.
    assert request.parent_span_id == ""
    assert {failed.trace_id, served.trace_id} == {request.trace_id}
    assert failed.parent_span_id == served.parent_span_id == request.span_id
    assert (request.kind, failed.kind, served.kind) == (SERVER, CLIENT, CLIENT)
    assert request.start_ns == START_NS
    assert request.start_ns <= failed.start_ns <= failed.end_ns <= served.start_ns
    assert served.end_ns <= request.end_ns

    assert request.status_code == STATUS_UNSET
    assert request.attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "llama-3.1-8b",
        "gen_ai.request.stream": True,
        "gen_ai.request.max_tokens": 256,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.provider.name": "aws.bedrock",
        "gen_ai.response.model": "meta.llama3-1-8b-instruct-v1:0",
        "gen_ai.response.time_to_first_chunk": 0.35,
        "gen_ai.usage.input_tokens": 1200,
        "gen_ai.usage.output_tokens": 80,
        "gen_ai.usage.cache_read.input_tokens": 1000,
        "gen_ai.usage.cache_creation.input_tokens": 100,
        "http.response.status_code": 200,
        "tiergate.request_id": "req-1",
        "tiergate.tier": "bedrock",
        "tiergate.attempts": 2,
        "tiergate.cost_usd": 0.00042,
        "tiergate.stage": "summarize",
        "tiergate.key_id": "key-7",
        "tiergate.team": "search",
        "tiergate.project": "answers",
    }

    assert failed.status_code == STATUS_ERROR
    assert failed.status_message == "status_503"
    assert failed.attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai-compatible",
        "gen_ai.request.model": "meta-llama/Llama-3.1-8B-Instruct",
        "tiergate.tier": "onprem",
        "tiergate.attempt": 1,
        "tiergate.outcome": "status_503",
        "tiergate.fallback_reason": "status_503",
        "error.type": "status_503",
        "http.response.status_code": 503,
    }
    assert served.status_code == STATUS_UNSET
    assert served.attributes["tiergate.attempt"] == 2
    assert served.attributes["tiergate.outcome"] == "ok"
    assert served.attributes["gen_ai.provider.name"] == "aws.bedrock"
    assert "tiergate.fallback_reason" not in served.attributes
    assert "error.type" not in served.attributes


async def test_the_export_is_protobuf_over_http_with_the_service_named(
    receiver: OtlpReceiver, tracing: Callable[[TracingSettings], Tracing]
) -> None:
    traced = tracing(settings_for(receiver, compression="gzip"))
    serve_after_fallback(start(traced))
    assert await asyncio.to_thread(traced.force_flush)

    [export] = receiver.exports
    assert export.path == "/v1/traces"
    assert export.headers["content-type"] == "application/x-protobuf"
    assert export.headers["content-encoding"] == "gzip"
    [span, *_] = receiver.spans
    assert span.resource["service.name"] == "tiergate-test"
    assert span.scope == "tiergate.gateway"


async def test_uncompressed_export_and_extra_headers(
    receiver: OtlpReceiver, tracing: Callable[[TracingSettings], Tracing]
) -> None:
    settings = settings_for(receiver, compression="none", headers={"x-collector-token": "t0k"})
    traced = tracing(settings)
    serve_after_fallback(start(traced))
    await close(traced)

    [export] = receiver.exports
    assert "content-encoding" not in export.headers
    assert export.headers["x-collector-token"] == "t0k"
    assert len(receiver.spans) == 3


async def test_a_failed_request_is_an_error_span_without_usage(
    receiver: OtlpReceiver, tracing: Callable[[TracingSettings], Tracing]
) -> None:
    traced = tracing(settings_for(receiver))
    request = start(traced, stage=None, key_id=None, team=None, project=None, max_tokens=None)
    request.attempt("onprem", "openai-compatible", "m").finish(outcome="timeout", status=None)
    request.finish(
        tier=None, status=502, usage=None, cost_usd=0.0, ttft_s=None, error="all_tiers_failed"
    )
    await close(traced)

    spans = by_name(receiver.spans)
    span = spans["chat llama-3.1-8b"]
    assert span.status_code == STATUS_ERROR
    assert span.status_message == "all_tiers_failed"
    assert span.attributes["error.type"] == "all_tiers_failed"
    assert span.attributes["http.response.status_code"] == 502
    assert span.attributes["tiergate.attempts"] == 1
    assert span.attributes["tiergate.cost_usd"] == 0.0
    absent = {
        "tiergate.tier",
        "tiergate.stage",
        "tiergate.key_id",
        "tiergate.team",
        "tiergate.project",
        "gen_ai.request.max_tokens",
        "gen_ai.response.model",
        "gen_ai.provider.name",
        "gen_ai.usage.input_tokens",
        "gen_ai.response.time_to_first_chunk",
    }
    assert absent.isdisjoint(span.attributes)
    timeout = spans["chat m"]
    assert "http.response.status_code" not in timeout.attributes
    assert timeout.attributes["tiergate.fallback_reason"] == "timeout"


async def test_a_client_error_is_not_a_server_error(
    receiver: OtlpReceiver, tracing: Callable[[TracingSettings], Tracing]
) -> None:
    traced = tracing(settings_for(receiver))
    start(traced).finish(tier=None, status=404, usage=None, cost_usd=0.0, ttft_s=None, error=None)
    await close(traced)

    [span] = receiver.spans
    assert span.status_code == STATUS_UNSET
    assert "error.type" not in span.attributes


async def test_an_attempt_left_open_ends_with_its_request_and_finish_twice_counts_once(
    receiver: OtlpReceiver, tracing: Callable[[TracingSettings], Tracing]
) -> None:
    traced = tracing(settings_for(receiver))
    request = start(traced)
    request.attempt("onprem", "openai-compatible", "m")
    request.finish(tier=None, status=499, usage=None, cost_usd=0.0, ttft_s=None, error="cancelled")
    request.finish(tier="x", status=200, usage=None, cost_usd=1.0, ttft_s=None, error=None)
    await close(traced)

    spans = by_name(receiver.spans)
    assert len(receiver.spans) == 2
    assert spans["chat m"].attributes["tiergate.outcome"] == "cancelled"
    assert spans["chat m"].end_ns <= spans["chat llama-3.1-8b"].end_ns
    assert spans["chat llama-3.1-8b"].attributes["tiergate.cost_usd"] == 0.0


async def test_interleaved_requests_keep_their_own_traces(
    receiver: OtlpReceiver, tracing: Callable[[TracingSettings], Tracing]
) -> None:
    """Concurrent requests on one event loop: each attempt is a child of its own request."""
    traced = tracing(settings_for(receiver))

    async def one(request_id: str, model: str) -> None:
        request = start(traced, request_id=request_id, model=model)
        await asyncio.sleep(0)
        attempt = request.attempt("onprem", "openai-compatible", f"{model}-upstream")
        await asyncio.sleep(0)
        attempt.finish(outcome="ok", status=200)
        request.finish(tier="onprem", status=200, usage=None, cost_usd=0.0, ttft_s=None, error=None)

    await asyncio.gather(*(one(f"req-{i}", f"model-{i}") for i in range(5)))
    await close(traced)

    spans = by_name(receiver.spans)
    assert len(spans) == 10
    trace_ids = set()
    for i in range(5):
        request = spans[f"chat model-{i}"]
        attempt = spans[f"chat model-{i}-upstream"]
        assert attempt.parent_span_id == request.span_id
        assert attempt.trace_id == request.trace_id
        assert request.parent_span_id == ""
        trace_ids.add(request.trace_id)
    assert len(trace_ids) == 5


async def test_other_operations_name_their_spans(
    receiver: OtlpReceiver, tracing: Callable[[TracingSettings], Tracing]
) -> None:
    traced = tracing(settings_for(receiver))
    request = start(traced, model="bge-m3", operation="embeddings", stream=False)
    request.attempt("onprem", "openai-compatible", "BAAI/bge-m3").finish(outcome="ok", status=200)
    request.finish(
        tier="onprem", status=200, usage=Usage(12, 0), cost_usd=0.0, ttft_s=None, error=None
    )
    await close(traced)

    spans = by_name(receiver.spans)
    assert sorted(spans) == ["embeddings BAAI/bge-m3", "embeddings bge-m3"]
    assert spans["embeddings bge-m3"].attributes["gen_ai.operation.name"] == "embeddings"
    assert spans["embeddings bge-m3"].attributes["gen_ai.request.stream"] is False
