"""W3C Trace Context: a client's traceparent (and tracestate) is continued, or a trace begins."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.telemetry.conftest import close, settings_for
from tests.telemetry.helpers import by_name, serve_after_fallback, start
from tests.telemetry.otlp_receiver import OtlpReceiver
from tiergate.telemetry.tracing import Tracing, TracingSettings

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


async def test_the_request_continues_the_clients_trace(
    receiver: OtlpReceiver, tracing: Callable[[TracingSettings], Tracing]
) -> None:
    traced = tracing(settings_for(receiver))
    serve_after_fallback(start(traced, traceparent=TRACEPARENT, tracestate="vendor=opaque"))
    await close(traced)

    spans = by_name(receiver.spans)
    request = spans["chat llama-3.1-8b"]
    assert request.trace_id == TRACE_ID
    assert request.parent_span_id == PARENT_ID
    assert request.span_id != PARENT_ID
    assert request.trace_state == "vendor=opaque"
    for attempt in spans.values():
        assert attempt.trace_id == TRACE_ID
    assert {s.parent_span_id for s in spans.values() if s is not request} == {request.span_id}


@pytest.mark.parametrize(
    "traceparent",
    [
        "garbage",
        f"00-{TRACE_ID}-{PARENT_ID}",  # flags missing
        f"00-{'0' * 32}-{PARENT_ID}-01",  # all-zero trace id is invalid
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero parent id is invalid
        f"ff-{TRACE_ID}-{PARENT_ID}-01",  # version ff is forbidden
        f"00-{TRACE_ID.upper()}-{PARENT_ID}-01",  # upper-case hex is not allowed
        "",
    ],
)
async def test_a_malformed_traceparent_starts_a_new_trace(
    receiver: OtlpReceiver, tracing: Callable[[TracingSettings], Tracing], traceparent: str
) -> None:
    traced = tracing(settings_for(receiver))
    serve_after_fallback(start(traced, traceparent=traceparent, tracestate="vendor=opaque"))
    await close(traced)

    spans = by_name(receiver.spans)
    request = spans["chat llama-3.1-8b"]
    assert request.parent_span_id == ""
    assert request.trace_id not in (TRACE_ID, TRACE_ID.lower(), "0" * 32)
    assert request.trace_state == ""
    assert {s.trace_id for s in spans.values()} == {request.trace_id}


async def test_a_client_trace_marked_not_sampled_is_not_exported(
    receiver: OtlpReceiver, tracing: Callable[[TracingSettings], Tracing]
) -> None:
    traced = tracing(settings_for(receiver))
    serve_after_fallback(start(traced, traceparent=f"00-{TRACE_ID}-{PARENT_ID}-00"))
    serve_after_fallback(start(traced, model="sampled"))
    await close(traced)

    assert {span.trace_id for span in receiver.spans} != {TRACE_ID}
    assert len(receiver.spans) == 3
    assert "chat sampled" in by_name(receiver.spans)
