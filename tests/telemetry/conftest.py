"""Fixtures of the trace tests: a started OTLP receiver and tracings that are always closed.

``tracing(settings)`` builds the tracing the gateway would (``create_tracing``); teardown
shuts each one down in a worker thread, bounded, so that no export thread outlives a test.
Settings from ``settings_for`` export only when a test flushes or shuts down (a schedule
delay of a minute), which makes what arrived at the receiver deterministic.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.telemetry.otlp_receiver import OtlpReceiver
from tiergate.telemetry.tracing import Tracing, TracingSettings, create_tracing

SHUTDOWN_BOUND_S = 30.0


def settings_for(receiver: OtlpReceiver, **overrides: Any) -> TracingSettings:
    values: dict[str, Any] = {
        "otlp_endpoint": receiver.traces_url,
        "service_name": "tiergate-test",
        "schedule_delay_s": 60.0,
        "export_timeout_s": 5.0,
    }
    if "langfuse_host" in overrides:
        del values["otlp_endpoint"]
    values.update(overrides)
    return TracingSettings(**values)


async def close(tracing: Tracing) -> None:
    """Shut down off the event loop (the receiver runs on it), within a bound."""
    await asyncio.wait_for(tracing.aclose(), timeout=SHUTDOWN_BOUND_S)


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    async with OtlpReceiver() as started:
        yield started


@pytest.fixture
async def tracing() -> AsyncIterator[Callable[[TracingSettings], Tracing]]:
    made: list[Tracing] = []

    def make(settings: TracingSettings) -> Tracing:
        made.append(create_tracing(settings))
        return made[-1]

    yield make
    for each in made:
        await close(each)
