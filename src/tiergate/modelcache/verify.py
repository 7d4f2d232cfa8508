"""sha256 of files, off the event loop and in parallel.

Each block is read and hashed in a worker thread (hashlib releases the GIL on large updates),
so several files hash at disk speed while the loop keeps reporting progress.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import Callable, Mapping
from pathlib import Path

BLOCK_BYTES = 4 * 1024 * 1024


def _hash_block(handle: io.FileIO, hasher: hashlib._Hash, buffer: bytearray) -> int:
    count = handle.readinto(buffer) or 0
    if count:
        hasher.update(memoryview(buffer)[:count])
    return count


async def sha256_file(
    path: Path,
    *,
    block_bytes: int = BLOCK_BYTES,
    on_progress: Callable[[int], None] | None = None,
) -> str:
    """The hex sha256 of the file at ``path``; ``on_progress`` gets each block's byte count."""
    handle = await asyncio.to_thread(io.FileIO, path, "r")
    try:
        hasher = hashlib.sha256()
        buffer = bytearray(block_bytes)
        while count := await asyncio.to_thread(_hash_block, handle, hasher, buffer):
            if on_progress is not None:
                on_progress(count)
        return hasher.hexdigest()
    finally:
        handle.close()


async def sha256_files(
    paths: Mapping[str, Path],
    *,
    parallel: int = 4,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, str]:
    """The hex sha256 of each file of ``paths`` (name -> path), at most ``parallel`` at a time."""
    limit = asyncio.Semaphore(max(1, parallel))

    async def one(name: str, path: Path) -> tuple[str, str]:
        async with limit:
            return name, await sha256_file(path, on_progress=on_progress)

    tasks = [asyncio.ensure_future(one(name, path)) for name, path in paths.items()]
    try:
        return dict(await asyncio.gather(*tasks))
    finally:
        for task in tasks:  # the first failure ends the others (a no-op once all are done)
            task.cancel()
