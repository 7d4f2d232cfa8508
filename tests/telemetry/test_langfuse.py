"""Langfuse mode: its OTLP endpoint, Basic auth, ingestion version and langfuse.* attributes."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

from tests.telemetry.conftest import close, settings_for
from tests.telemetry.helpers import START_NS, by_name, serve_after_fallback, start
from tests.telemetry.otlp_receiver import OtlpReceiver
from tiergate.telemetry.tracing import Tracing, TracingSettings

PUBLIC_KEY = "pk-lf-1234"
SECRET_KEY = "sk-lf-secret-5678"


def langfuse_settings(receiver: OtlpReceiver) -> TracingSettings:
    return settings_for(
        receiver,
        langfuse_host=receiver.base_url + "/",
        public_key=PUBLIC_KEY,
        secret_key=SECRET_KEY,
    )


async def test_langfuse_mode_sends_to_its_endpoint_with_basic_auth_and_ingestion_version(
    receiver: OtlpReceiver, tracing: Callable[[TracingSettings], Tracing]
) -> None:
    traced = tracing(langfuse_settings(receiver))
    serve_after_fallback(start(traced))
    await close(traced)

    [export] = receiver.exports
    assert export.path == "/api/public/otel/v1/traces"
    expected = base64.b64encode(f"{PUBLIC_KEY}:{SECRET_KEY}".encode()).decode()
    assert export.headers["authorization"] == f"Basic {expected}"
    assert export.headers["x-langfuse-ingestion-version"] == "4"
    assert export.headers["content-type"] == "application/x-protobuf"


async def test_the_request_is_a_generation_with_usage_cost_and_trace_fields(
    receiver: OtlpReceiver, tracing: Callable[[TracingSettings], Tracing]
) -> None:
    traced = tracing(langfuse_settings(receiver))
    serve_after_fallback(start(traced, start_time_ns=START_NS))
    await close(traced)

    spans = by_name(receiver.spans)
    generation = spans["chat llama-3.1-8b"].attributes
    assert generation["langfuse.observation.type"] == "generation"
    assert generation["langfuse.observation.model.name"] == "meta.llama3-1-8b-instruct-v1:0"
    # prompt 1200 = 100 uncached + 1000 read from the cache + 100 written to it
    assert json.loads(generation["langfuse.observation.usage_details"]) == {
        "input": 100,
        "input_cached_tokens": 1000,
        "input_cache_creation": 100,
        "output": 80,
        "total": 1280,
    }
    assert json.loads(generation["langfuse.observation.cost_details"]) == {"total": 0.00042}
    # START_NS is 2025-07-13T05:20:00Z; the first token came 0.35 s later.
    assert generation["langfuse.observation.completion_start_time"] == "2025-07-13T05:20:00.350Z"
    assert generation["langfuse.trace.name"] == "summarize"
    assert generation["langfuse.trace.tags"] == ("tier:bedrock", "stage:summarize", "team:search")
    metadata = {
        key.removeprefix("langfuse.trace.metadata."): value
        for key, value in generation.items()
        if key.startswith("langfuse.trace.metadata.")
    }
    assert metadata == {
        "request_id": "req-1",
        "tier": "bedrock",
        "stage": "summarize",
        "key_id": "key-7",
        "team": "search",
        "project": "answers",
    }
    # The GenAI attributes stay, for any other reader of the same spans.
    assert generation["gen_ai.usage.input_tokens"] == 1200

    for name, span in spans.items():
        if name != "chat llama-3.1-8b":
            # Attempts are plain spans: counting tokens and cost once, on the generation.
            assert span.attributes["langfuse.observation.type"] == "span"
            assert "langfuse.observation.usage_details" not in span.attributes


async def test_without_a_stage_the_trace_is_named_after_the_model(
    receiver: OtlpReceiver, tracing: Callable[[TracingSettings], Tracing]
) -> None:
    traced = tracing(langfuse_settings(receiver))
    start(traced, stage=None, team=None).finish(
        tier=None, status=503, usage=None, cost_usd=0.0, ttft_s=None, error="no_tier"
    )
    await close(traced)

    [span] = receiver.spans
    assert span.attributes["langfuse.trace.name"] == "llama-3.1-8b"
    assert span.attributes["langfuse.observation.model.name"] == "llama-3.1-8b"
    assert "langfuse.trace.tags" not in span.attributes
    assert "langfuse.observation.usage_details" not in span.attributes
    assert "langfuse.observation.completion_start_time" not in span.attributes


async def test_no_key_material_in_any_span(
    receiver: OtlpReceiver, tracing: Callable[[TracingSettings], Tracing]
) -> None:
    traced = tracing(langfuse_settings(receiver))
    serve_after_fallback(start(traced))
    await close(traced)

    for export in receiver.exports:
        body = export.message.SerializeToString()
        assert SECRET_KEY.encode() not in body
        assert PUBLIC_KEY.encode() not in body


async def test_plain_otlp_mode_has_no_langfuse_attributes(
    receiver: OtlpReceiver, tracing: Callable[[TracingSettings], Tracing]
) -> None:
    traced = tracing(settings_for(receiver))
    serve_after_fallback(start(traced))
    await close(traced)

    for span in receiver.spans:
        assert not [key for key in span.attributes if key.startswith("langfuse.")]
