"""Helpers of the emulator tests: reading Prometheus text, polling."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` (full sample name) whose labels include ``labels``."""
    return sum(
        float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def histogram_mean(text: str, name: str) -> float:
    """``name_sum / name_count`` of a histogram (NaN when it has no observations)."""
    count = metric(text, f"{name}_count")
    return metric(text, f"{name}_sum") / count if count else float("nan")


async def eventually(
    check: Callable[[], bool | Awaitable[bool]],
    *,
    timeout_s: float = 5.0,
    interval_s: float = 0.02,
    what: str = "condition",
) -> None:
    """Poll ``check`` until it is true, at most ``timeout_s``; fail the test otherwise."""
    for _ in range(max(1, int(timeout_s / interval_s))):
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        await asyncio.sleep(interval_s)
    pytest.fail(f"{what} not reached within {timeout_s} s")
