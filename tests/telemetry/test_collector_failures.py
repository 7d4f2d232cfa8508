"""A collector that is down or refuses exports never reaches the request path."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from tests.telemetry.conftest import close, settings_for
from tests.telemetry.helpers import serve_after_fallback, start
from tests.telemetry.otlp_receiver import OtlpReceiver
from tiergate.telemetry.tracing import Tracing, TracingSettings


async def test_a_collector_that_is_down_costs_requests_nothing_and_shutdown_ends(
    tracing: Callable[[TracingSettings], Tracing], caplog: pytest.LogCaptureFixture
) -> None:
    # A port that was just listening and is not any more: connections are refused.
    down = OtlpReceiver()
    await down.start()
    await down.close()
    traced = tracing(settings_for(down, export_timeout_s=0.5, schedule_delay_s=0.01))

    with caplog.at_level(logging.WARNING, logger="opentelemetry"):
        for i in range(20):
            serve_after_fallback(start(traced, request_id=f"req-{i}"))
            await asyncio.sleep(0.005)  # lets the export thread try while requests go on
        assert await asyncio.to_thread(traced.force_flush)
        await close(traced)  # bounded: SHUTDOWN_BOUND_S

    assert "Failed to export spans batch" in caplog.text
    assert down.exports == []


@pytest.mark.parametrize("status", [400, 500, 503])
async def test_a_collector_that_refuses_exports_is_logged_not_raised(
    tracing: Callable[[TracingSettings], Tracing],
    caplog: pytest.LogCaptureFixture,
    status: int,
) -> None:
    async with OtlpReceiver(status=status) as refusing:
        traced = tracing(settings_for(refusing, export_timeout_s=0.5))
        with caplog.at_level(logging.WARNING, logger="opentelemetry"):
            serve_after_fallback(start(traced))
            await close(traced)

    assert "Failed to export spans batch" in caplog.text
    assert refusing.exports == []


async def test_spans_after_shutdown_are_dropped_quietly(
    receiver: OtlpReceiver, tracing: Callable[[TracingSettings], Tracing]
) -> None:
    traced = tracing(settings_for(receiver))
    serve_after_fallback(start(traced, request_id="before"))
    await close(traced)
    serve_after_fallback(start(traced, request_id="after"))
    await close(traced)  # a second shutdown does nothing

    ids = {span.attributes.get("tiergate.request_id") for span in receiver.spans}
    assert ids == {"before", None}
