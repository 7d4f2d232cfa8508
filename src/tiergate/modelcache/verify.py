"""sha256 of files, off the event loop and in parallel.

Each block is read and hashed in a worker thread (hashlib releases the GIL on large updates),
so several files hash at disk speed while the loop keeps reporting progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tiergate.modelcache.plan import FileEntry

BLOCK_BYTES = 4 * 1024 * 1024


def _hash_block(handle: io.FileIO, hasher: hashlib._Hash, buffer: bytearray | memoryview) -> int:
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


@dataclass(eq=False)
class _Follow:
    """One file being hashed as it downloads: chunks on disk beyond its complete prefix."""

    size: int
    ready: dict[int, int] = field(default_factory=dict)  # start -> end
    prefix: int = 0
    moved: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[str] | None = None


class FollowingHashes:
    """sha256 of files while they download. Each file's hasher follows the part of it known
    to be on disk from its first byte (chunks are reported in any order; it reads no further
    than the first gap), so a file's hash is ready moments after its last chunk; at most
    ``parallel`` blocks are hashed at once. Files whose chunks were all reported are in
    :meth:`results`; the others are not."""

    def __init__(self, root: Path, parallel: int) -> None:
        self._root = root
        self._slots = asyncio.Semaphore(max(1, parallel))
        # Hashing runs at a lower priority than the download: it takes the CPU the download
        # leaves, so on a busy machine it falls behind (and finishes after) instead of
        # slowing the transfer down.
        self._executor = ThreadPoolExecutor(
            max(1, parallel), thread_name_prefix="tiergate-hash", initializer=_lower_priority
        )
        self._files: dict[str, _Follow] = {}
        self._closing = False

    def chunk_done(self, entry: FileEntry, start: int, end: int) -> None:
        """Bytes ``[start, end)`` of ``entry``'s file are on disk."""
        state = self._files.get(entry.path)
        if state is None:
            state = self._files[entry.path] = _Follow(entry.size)
            state.task = asyncio.create_task(self._follow(entry.path, state))
        state.ready[start] = end
        while state.prefix in state.ready:
            state.prefix = state.ready.pop(state.prefix)
        state.moved.set()

    async def results(self) -> dict[str, str]:
        """The hash of every file whose chunks all came (waiting for the last blocks)."""
        hashes: dict[str, str] = {}
        for path, state in self._files.items():
            if state.prefix >= state.size and state.task is not None:
                hashes[path] = await state.task
        return hashes

    async def close(self) -> None:
        """Stop the hashers (each after the block it is reading: a worker thread cannot be
        interrupted, and its open file would be left behind)."""
        self._closing = True
        for state in self._files.values():
            state.moved.set()
        tasks = [state.task for state in self._files.values() if state.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        self._executor.shutdown(wait=False)

    async def _follow(self, path: str, state: _Follow) -> str:
        loop = asyncio.get_running_loop()
        handle = await loop.run_in_executor(self._executor, io.FileIO, self._root / path, "r")
        try:
            hasher = hashlib.sha256()
            buffer = memoryview(bytearray(BLOCK_BYTES))
            hashed = 0
            while hashed < state.size and not self._closing:
                if state.prefix <= hashed:
                    state.moved.clear()
                    await state.moved.wait()
                    continue
                async with self._slots:
                    view = buffer[: min(len(buffer), state.prefix - hashed)]
                    count = await loop.run_in_executor(
                        self._executor, _hash_block, handle, hasher, view
                    )
                if not count:
                    break  # shorter than planned: the size check names it
                hashed += count
            return hasher.hexdigest()
        finally:
            handle.close()


_HASH_NICENESS = 10


def _lower_priority() -> None:
    """Lower this thread's scheduling priority (Linux sets niceness per thread)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _HASH_NICENESS)
