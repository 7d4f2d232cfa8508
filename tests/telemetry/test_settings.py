"""Tracing settings, the factory, and the no-op tracing used when none is configured."""

from __future__ import annotations

import base64
import sys

import pytest

from tiergate.providers.base import Usage
from tiergate.telemetry.tracing import (
    NoTracing,
    TracingSettings,
    TracingSetupError,
    create_tracing,
)


def test_langfuse_endpoint_and_headers_follow_from_host_and_keys() -> None:
    settings = TracingSettings(
        langfuse_host="https://cloud.langfuse.com/",
        public_key="pk-lf-1",
        secret_key="sk-lf-2",
        headers={"x-extra": "1"},
    )
    assert settings.langfuse
    assert settings.endpoint == "https://cloud.langfuse.com/api/public/otel/v1/traces"
    assert settings.export_headers() == {
        "x-extra": "1",
        "Authorization": "Basic " + base64.b64encode(b"pk-lf-1:sk-lf-2").decode(),
        "x-langfuse-ingestion-version": "4",
    }


def test_plain_otlp_endpoint_is_used_as_given() -> None:
    settings = TracingSettings(otlp_endpoint="http://collector:4318/v1/traces")
    assert not settings.langfuse
    assert settings.endpoint == "http://collector:4318/v1/traces"
    assert settings.export_headers() == {}


def test_secrets_stay_out_of_repr_and_headers_are_frozen() -> None:
    headers = {"x-api-key": "collector-secret"}
    settings = TracingSettings(otlp_endpoint="http://collector:4318/v1/traces", headers=headers)
    langfuse = TracingSettings(
        langfuse_host="https://cloud.langfuse.com", public_key="pk", secret_key="sk-very-secret"
    )
    assert "collector-secret" not in repr(settings)
    assert "sk-very-secret" not in repr(langfuse)
    headers["x-api-key"] = "changed"
    assert settings.export_headers() == {"x-api-key": "collector-secret"}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "exactly one of"),
        (
            {"otlp_endpoint": "http://a:4318/v1/traces", "langfuse_host": "http://b"},
            "exactly one of",
        ),
        ({"langfuse_host": "https://cloud.langfuse.com", "public_key": "pk"}, "secret_key"),
        ({"otlp_endpoint": "collector:4318"}, "http(s)://"),
        ({"otlp_endpoint": "grpc://collector:4317"}, "http(s)://"),
        ({"otlp_endpoint": "http://c/v1/traces", "export_timeout_s": 0}, "positive"),
        ({"otlp_endpoint": "http://c/v1/traces", "max_queue_size": 0}, "max_queue_size"),
        ({"otlp_endpoint": "http://c/v1/traces", "compression": "zstd"}, "compression"),
        ({"otlp_endpoint": "http://c/v1/traces", "service_name": ""}, "service_name"),
    ],
)
def test_invalid_settings_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(TracingSetupError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TracingSettings(**fields)  # type: ignore[arg-type]


def test_no_settings_means_the_no_op_tracing() -> None:
    assert isinstance(create_tracing(None), NoTracing)


async def test_the_no_op_tracing_records_nothing_and_allocates_no_span_per_request() -> None:
    tracing = NoTracing()
    spans = []
    for i in range(3):
        request = tracing.start_request(
            request_id=f"req-{i}",
            model="m",
            stage="s",
            key_id=None,
            team=None,
            project=None,
            traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            stream=False,
            max_tokens=None,
            temperature=None,
        )
        attempt = request.attempt("onprem", "openai-compatible", "m")
        attempt.finish(outcome="ok", status=200)
        request.finish(
            tier="onprem", status=200, usage=Usage(1, 1), cost_usd=0.1, ttft_s=None, error=None
        )
        spans.append((request, attempt))
    # The same stateless objects every time: nothing per request to allocate or keep.
    assert len({id(request) for request, _ in spans}) == 1
    assert len({id(attempt) for _, attempt in spans}) == 1
    assert not hasattr(spans[0][0], "__dict__")
    assert tracing.force_flush()
    tracing.shutdown()
    await tracing.aclose()


def test_settings_without_the_tracing_extra_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # None in sys.modules makes the import fail as it does when OpenTelemetry is missing.
    monkeypatch.setitem(sys.modules, "tiergate.telemetry.otel_tracing", None)
    with pytest.raises(TracingSetupError, match=r"tiergate\[tracing\]"):
        create_tracing(TracingSettings(otlp_endpoint="http://127.0.0.1:4318/v1/traces"))
