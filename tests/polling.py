"""Bounded polling for tests that wait on something happening in a server."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest


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
