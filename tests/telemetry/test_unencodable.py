"""A string the exporter cannot encode as UTF-8 costs neither its span nor the others."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from tests.telemetry.conftest import close, settings_for
from tests.telemetry.helpers import serve_after_fallback, start
from tests.telemetry.otlp_receiver import OtlpReceiver
from tiergate.telemetry.tracing import Tracing, TracingSettings

BAD = "bad-\udcff"  # a lone surrogate: how a byte that is not UTF-8 arrives in a header


async def test_a_span_with_a_lone_surrogate_is_exported_escaped_with_the_rest_of_its_batch(
    receiver: OtlpReceiver,
    tracing: Callable[[TracingSettings], Tracing],
    caplog: pytest.LogCaptureFixture,
) -> None:
    traced = tracing(settings_for(receiver))
    with caplog.at_level(logging.WARNING):
        serve_after_fallback(start(traced, request_id="good-1"))
        # In the span name (the model), an attribute and the end attributes alike.
        serve_after_fallback(start(traced, request_id=BAD, model=BAD, stage=BAD, team=BAD))
        serve_after_fallback(start(traced, request_id="good-2"))
        assert await asyncio.to_thread(traced.force_flush)  # one batch: all three requests
        await close(traced)

    requests = {
        span.attributes["tiergate.request_id"]: span
        for span in receiver.spans
        if "tiergate.request_id" in span.attributes
    }
    assert set(requests) == {"good-1", "good-2", "bad-\\udcff"}
    bad = requests["bad-\\udcff"]
    assert bad.name == "chat bad-\\udcff"
    assert bad.attributes["tiergate.stage"] == bad.attributes["tiergate.team"] == "bad-\\udcff"
    # Every request span with its two attempts.
    assert len(receiver.spans) == 9
    assert "Failed to encode" not in caplog.text
