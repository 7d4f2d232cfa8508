"""Coordination of fetchers: one DEST, one fetcher at a time; workers wait for a leader.

The lock is ``flock`` on ``DEST/.tiergate.lock``: the kernel releases it when its holder dies,
so a killed init container never leaves a stale lock behind. ``flock`` is per open file, so
tasks of one process exclude each other as processes do. On filesystems where ``flock`` is a
no-op (some Lustre and CIFS mounts) the lock protects nothing: keep DEST node-local (emptyDir).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from tiergate.modelcache.cache import LOCK_NAME, MARKER_NAME, Marker, read_marker
from tiergate.modelcache.errors import LockTimeoutError

POLL_S = 0.1


@contextlib.asynccontextmanager
async def exclusive_lock(dest: Path, *, timeout_s: float | None = None) -> AsyncIterator[bool]:
    """Hold DEST's fetch lock for the block; yields whether another fetcher held it first.

    Waits at most ``timeout_s`` (forever when None), polling, so the event loop stays free."""
    path = dest / LOCK_NAME
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        waited = False
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = True
                if deadline is not None and time.monotonic() >= deadline:
                    raise LockTimeoutError(
                        f"{path}: another fetcher held the lock for more than {timeout_s:g} s"
                    ) from None
                await asyncio.sleep(POLL_S)
        yield waited
    finally:
        os.close(descriptor)  # closing releases the lock


async def wait_for_marker(location: Path, *, timeout_s: float, poll_s: float = 1.0) -> Marker:
    """Wait until ``location`` (a leader's DEST, or its marker file) holds a completion marker;
    raise :class:`LockTimeoutError` after ``timeout_s``."""
    directory = location.parent if location.name == MARKER_NAME else location
    deadline = time.monotonic() + timeout_s
    while (marker := read_marker(directory)) is None:
        if time.monotonic() >= deadline:
            raise LockTimeoutError(
                f"{directory / MARKER_NAME}: the leader's marker did not appear "
                f"within {timeout_s:g} s"
            )
        await asyncio.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
    return marker
