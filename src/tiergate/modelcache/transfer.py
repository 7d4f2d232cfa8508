"""Parallel, resumable ranged downloads of a plan's files into a staging directory.

Every file is cut into chunks of ``chunk_bytes``; up to ``connections`` chunks, of one file or
of several, are read at once, each in a worker thread of its own (the source's
:class:`~tiergate.modelcache.sources.ranged.RangeReader`: for HTTP, S3 and the Hub, blocking
reads into a reused 1 MiB buffer, so the connections use every core). Bytes are written at
their offsets as they arrive, so memory stays small whatever the chunk size. A chunk is done
when its bytes are fsync'ed and its index is appended to the file's journal (:mod:`.journal`);
a run killed at any point re-fetches only the chunks that were in flight. A retry within a run
resumes a chunk where its last read stopped.

Files are left in ``staging`` at their plan paths, their journals removed once complete; a file
there at its planned size without a journal is taken as complete (delete it to fetch it again).
Nothing here hashes: verification does. The byte count of every read is checked.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import ParamSpec, TypeVar

from tiergate.modelcache.errors import (
    FetchError,
    LongReadError,
    RetryableError,
    SourceError,
    SpaceError,
)
from tiergate.modelcache.journal import Journal, JournalState, journal_path, read_journal
from tiergate.modelcache.plan import FileEntry, Plan
from tiergate.modelcache.sources.base import Source
from tiergate.modelcache.sources.ranged import RangeReader

MIB = 1 << 20
_REPORT_BYTES = 4 * MIB  # progress from the reading threads to the loop, in steps this big

_P = ParamSpec("_P")
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class TransferSettings:
    """How a transfer reads: ``connections`` chunks in flight over all files, each of
    ``chunk_bytes``; ``retries`` per chunk with full-jitter exponential backoff (or the server's
    ``Retry-After``, at most ``retry_after_max_s``); a read that yields no byte for ``stall_s``
    is abandoned and retried. Request timeouts are the source's."""

    connections: int = 8
    chunk_bytes: int = 16 * MIB
    retries: int = 8
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 600.0
    stall_s: float = 30.0

    def __post_init__(self) -> None:
        if self.connections < 1:
            raise ValueError("connections must be at least 1")
        if self.chunk_bytes < 1:
            raise ValueError("chunk_bytes must be at least 1")
        if self.retries < 0:
            raise ValueError("retries must not be negative")
        if min(self.backoff_base_s, self.backoff_max_s, self.retry_after_max_s) < 0:
            raise ValueError("backoff and Retry-After limits must not be negative")
        if self.stall_s <= 0:
            raise ValueError("stall_s must be positive")

    def retry_delay_s(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (1 for the first): the server's
        ``Retry-After`` (at most ``retry_after_max_s``) plus up to ``backoff_base_s`` of jitter,
        so that connections refused together do not come back together; else uniform in
        [0, min(max, base * 2^(attempt-1)))."""
        if retry_after_s is not None:
            wait = min(max(retry_after_s, 0.0), self.retry_after_max_s)
            return wait + rng.uniform(0.0, self.backoff_base_s)
        ceiling = self.backoff_base_s * 2.0 ** min(attempt - 1, 60)
        return rng.uniform(0.0, min(self.backoff_max_s, ceiling))


async def retrying(
    call: Callable[[], Awaitable[_T]],
    settings: TransferSettings,
    rng: random.Random,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    on_retry: Callable[[], None] | None = None,
) -> _T:
    """``await call()`` again after each :class:`RetryableError`, waiting as
    :meth:`TransferSettings.retry_delay_s` says, at most ``settings.retries`` times; then a
    :class:`FetchError` naming the last error."""
    attempt = 0
    while True:
        try:
            return await call()
        except RetryableError as exc:
            attempt += 1
            if attempt > settings.retries:
                raise FetchError(f"giving up after {settings.retries} retries: {exc}") from exc
            if on_retry is not None:
                on_retry()
            await sleep(settings.retry_delay_s(attempt, exc.retry_after_s, rng))


@dataclass(frozen=True, slots=True)
class TransferStats:
    """What a transfer did: ``bytes_fetched`` read from the source in this run,
    ``bytes_resumed`` already on disk from an earlier run, ``retries`` of chunk reads,
    wall ``seconds``, and ``files`` completed by this run."""

    bytes_fetched: int
    bytes_resumed: int
    retries: int
    seconds: float
    files: int


async def transfer(
    source: Source,
    plan: Plan,
    staging: Path,
    settings: TransferSettings,
    on_progress: Callable[[int], None] | None = None,
    *,
    on_file_done: Callable[[FileEntry], None] | None = None,
    on_chunk_done: Callable[[FileEntry, int, int], None] | None = None,
    rng: random.Random | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> TransferStats:
    """Fetch every file of ``plan`` from ``source`` to ``staging / entry.path``.

    ``on_progress(n)`` is called on the event loop for every ``n`` bytes written, and once at
    the start with the bytes already on disk from an earlier run, so that its calls add up to
    ``plan.total_bytes`` (more when a long read made a chunk start over). ``on_file_done(entry)``
    is called on the event loop as each file this run writes is complete on disk.
    ``on_chunk_done(entry, start, end)`` is called on the event loop for each chunk on disk:
    first for those an earlier run left, then as this run completes them, in any order; so that
    the caller can hash each file's complete prefix while the rest downloads. ``rng`` (backoff
    jitter) and ``sleep`` are there for tests.

    Raises :class:`SourceError` for what retrying cannot fix (naming file and range),
    :class:`FetchError` when a chunk's retries are exhausted, :class:`SpaceError` when the disk
    fills; the journals stay, so a later run resumes.
    """
    run = _Transfer(
        source,
        staging,
        settings,
        on_progress=on_progress,
        on_file_done=on_file_done,
        on_chunk_done=on_chunk_done,
        rng=rng or random.Random(),
        sleep=sleep,
    )
    return await run.run(plan)


@dataclass(eq=False, slots=True)
class _FileJob:
    """One file of the plan that needs bytes, and its open descriptors while it is written."""

    entry: FileEntry
    path: Path
    todo: list[int]
    resume: JournalState | None
    left: int = 0
    fd: int = -1
    journal: Journal | None = None
    opened: bool = False
    opening: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(slots=True)
class _Cursor:
    """How far a chunk's bytes are written: ``[start, pos)`` of a chunk ``[start, end)``."""

    start: int
    end: int
    pos: int


class _Transfer:
    def __init__(
        self,
        source: Source,
        staging: Path,
        settings: TransferSettings,
        *,
        on_progress: Callable[[int], None] | None,
        on_file_done: Callable[[FileEntry], None] | None,
        on_chunk_done: Callable[[FileEntry, int, int], None] | None,
        rng: random.Random,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._source = source
        self._on_file_done = on_file_done
        self._on_chunk_done = on_chunk_done
        self._staging = staging
        self._settings = settings
        self._on_progress = on_progress
        self._rng = rng
        self._sleep = sleep
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()  # the run is ending: reads in threads give up
        self._to_write = 0
        self._fetched = 0
        self._retries = 0
        self._files = 0

    async def run(self, plan: Plan) -> TransferStats:
        started = time.monotonic()
        jobs, resumed, created = await asyncio.to_thread(
            _scan, plan, self._staging, self._settings.chunk_bytes
        )
        self._files = created
        self._to_write = plan.total_bytes - resumed
        if self._on_progress is not None and resumed:
            self._on_progress(resumed)
        if self._on_chunk_done is not None:
            for job, start, end in _chunks_on_disk(jobs, self._settings.chunk_bytes):
                self._on_chunk_done(job.entry, start, end)
        chunks = [(job, index) for job in jobs for index in job.todo]
        work = iter(chunks)
        self._loop = asyncio.get_running_loop()
        # Reads and writes both run in these threads: one per connection.
        self._executor = ThreadPoolExecutor(
            max_workers=self._settings.connections, thread_name_prefix="tiergate-get"
        )
        workers = [
            asyncio.create_task(self._worker(work))
            for _ in range(min(self._settings.connections, len(chunks)))
        ]
        try:
            if workers:
                done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    if (error := task.exception()) is not None:
                        raise error
        finally:
            self._stop.set()
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            # Threads may still be writing to the descriptors: let them end before closing
            # (a read not yet started is dropped; one in progress stops at its next bytes, or
            # at its stall limit), while the event loop goes on (signals, progress).
            await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
            for job in jobs:
                _close_quietly(job)
        return TransferStats(
            bytes_fetched=self._fetched,
            bytes_resumed=resumed,
            retries=self._retries,
            seconds=time.monotonic() - started,
            files=self._files,
        )

    async def _worker(self, work: Iterator[tuple[_FileJob, int]]) -> None:
        for job, index in work:  # shared by all workers: each takes the next chunk
            async with job.opening:
                if not job.opened:
                    await self._disk(job, _open_job, job, self._settings.chunk_bytes)
            await self._fetch_chunk(job, index)
            job.left -= 1
            if job.left == 0:
                await self._disk(job, _finish_job, job)
                self._files += 1
                if self._on_file_done is not None:
                    self._on_file_done(job.entry)

    async def _fetch_chunk(self, job: _FileJob, index: int) -> None:
        start = index * self._settings.chunk_bytes
        end = min(start + self._settings.chunk_bytes, job.entry.size)
        where = f"{job.entry.path} bytes {start}-{end - 1}"
        cursor = _Cursor(start, end, start)

        async def attempt() -> None:
            reader = await self._source.reader(job.entry.path)
            await self._disk(job, self._read_chunk, reader, job, index, cursor)

        try:
            await retrying(attempt, self._settings, self._rng, self._sleep, self._count_retry)
        except SpaceError:
            raise
        except SourceError as exc:
            raise SourceError(f"{where}: {exc}") from exc
        except FetchError as exc:
            # Chained to the last retryable error itself, not to retrying()'s wrapper.
            raise FetchError(f"{where}: {exc}") from (exc.__cause__ or exc)
        if self._on_chunk_done is not None:
            self._on_chunk_done(job.entry, start, end)

    def _count_retry(self) -> None:
        self._retries += 1

    def _read_chunk(self, reader: RangeReader, job: _FileJob, index: int, cursor: _Cursor) -> None:
        """In a worker thread: read ``[cursor.pos, cursor.end)`` and write it in place, then
        commit the chunk. ``cursor.pos`` follows the bytes written, also when the read fails,
        so that a retry goes on from there."""
        loop, stop = self._loop, self._stop
        assert loop is not None
        if stop.is_set():
            raise FetchError("the transfer stopped")

        unreported = 0  # bytes written, told to the loop every _REPORT_BYTES

        def write(piece: memoryview) -> None:
            nonlocal unreported
            if stop.is_set():
                raise FetchError("the transfer stopped")
            if cursor.pos + len(piece) > cursor.end:
                raise LongReadError("long read: more bytes than the range asked for")
            _write_all(job.fd, piece, cursor.pos)
            cursor.pos += len(piece)
            unreported += len(piece)
            if unreported >= _REPORT_BYTES:
                loop.call_soon_threadsafe(self._progressed, unreported)
                unreported = 0

        try:
            reader.read_into(cursor.pos, cursor.end, write, self._settings.stall_s)
        except LongReadError:
            cursor.pos = cursor.start  # a longer body than asked for: trust none of it
            raise
        finally:
            if unreported:
                loop.call_soon_threadsafe(self._progressed, unreported)
        if cursor.pos != cursor.end:
            raise RetryableError(f"short read: {cursor.end - cursor.pos} bytes missing")
        _commit_chunk(job, index, cursor.start, cursor.end)

    def _progressed(self, size: int) -> None:
        self._fetched += size
        if self._on_progress is not None:
            self._on_progress(size)

    async def _disk(
        self, job: _FileJob, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> _T:
        """Run a blocking file operation off the event loop; name the disk in its errors."""
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                needed = self._to_write - self._fetched
                raise SpaceError(
                    f"no space left under {self._staging} writing {job.entry.path}: "
                    f"{needed} more bytes are needed to finish"
                ) from exc
            raise FetchError(f"cannot write {job.path}: {exc}") from exc


def _target(staging: Path, path: str) -> Path:
    """Where a plan path lands (a :class:`Plan` refuses paths that would leave the root)."""
    return staging.joinpath(*path.split("/"))


def _scan(plan: Plan, staging: Path, chunk_bytes: int) -> tuple[list[_FileJob], int, int]:
    """The files that need bytes, the bytes already on disk, and the empty files created."""
    jobs: list[_FileJob] = []
    resumed = created = 0
    for entry in plan.files:
        path = _target(staging, entry.path)
        journal = journal_path(path)
        size = path.stat().st_size if path.is_file() else None
        if entry.size == 0:
            if size != 0 or journal.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"")
                journal.unlink(missing_ok=True)
                created += 1
            continue
        n_chunks = -(-entry.size // chunk_bytes)
        state = read_journal(
            journal, entry.size, entry.sha256, chunk_bytes, n_chunks, version=entry.version
        )
        if size != entry.size:
            state = None  # a staged file without its journal (or of another size) starts over
        done = state.chunks if state is not None else frozenset()
        todo = [index for index in range(n_chunks) if index not in done]
        resumed += sum(min(chunk_bytes, entry.size - index * chunk_bytes) for index in done)
        if todo:
            jobs.append(_FileJob(entry, path, todo, state, left=len(todo)))
    return jobs, resumed, created


def _chunks_on_disk(jobs: list[_FileJob], chunk_bytes: int) -> Iterator[tuple[_FileJob, int, int]]:
    """The chunks of ``jobs`` an earlier run completed: (job, start, end)."""
    for job in jobs:
        todo = set(job.todo)
        for index in range(-(-job.entry.size // chunk_bytes)):
            if index not in todo:
                start = index * chunk_bytes
                yield job, start, min(start + chunk_bytes, job.entry.size)


def _open_job(job: _FileJob, chunk_bytes: int) -> None:
    """Open a file and its journal: continue both, or start both over (journal first)."""
    journal = journal_path(job.path)
    if job.resume is not None:
        job.journal = Journal.reopen(journal, job.resume)
        job.fd = os.open(job.path, os.O_WRONLY)
    else:
        job.path.parent.mkdir(parents=True, exist_ok=True)
        job.journal = Journal.create(
            journal, job.entry.size, job.entry.sha256, chunk_bytes, version=job.entry.version
        )
        job.fd = os.open(job.path, os.O_WRONLY | os.O_CREAT, 0o644)
        os.ftruncate(job.fd, job.entry.size)
    job.opened = True


def _write_all(fd: int, data: memoryview, offset: int) -> None:
    """Write ``data`` at ``offset`` whole (``pwrite`` may write less than asked)."""
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written


_fdatasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)


def _writeback_starter() -> Callable[[int, int, int], None]:
    """``start(fd, offset, length)``: ask the kernel to begin writing those dirty pages to disk
    now, without waiting (Linux ``sync_file_range(SYNC_FILE_RANGE_WRITE)``), so that the
    fdatasync when the file completes finds little left to flush; a no-op elsewhere. Without
    it a model smaller than the kernel's dirty threshold would all be flushed at the end."""
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return lambda fd, offset, length: None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    function.restype = ctypes.c_int

    def start(fd: int, offset: int, length: int) -> None:
        function(fd, offset, length, _SYNC_FILE_RANGE_WRITE)  # a hint: its errors change nothing

    return start


_SYNC_FILE_RANGE_WRITE = 2
_start_writeback = _writeback_starter()


def _commit_chunk(job: _FileJob, index: int, start: int, end: int) -> None:
    """Record a written chunk ``[start, end)`` in the journal. A file no hash can check is made
    durable chunk by chunk first, so that its journal never runs ahead of the disk (see
    :mod:`.journal`); the others' chunks start on their way to the disk."""
    assert job.journal is not None
    durable = job.entry.sha256 is None
    if durable:
        _fdatasync(job.fd)
    else:
        _start_writeback(job.fd, start, end - start)
    job.journal.record(index, durable=durable)


def _finish_job(job: _FileJob) -> None:
    """A file is complete: make it durable (the completion marker will vouch for it) and close
    it, leaving it for verification. Its journal, every chunk recorded, stays until the staging
    area is cleared: it is what says that the staged file is whole and of this version."""
    assert job.journal is not None
    _fdatasync(job.fd)
    os.close(job.fd)
    job.fd = -1
    job.journal.close()
    job.journal = None


def _close_quietly(job: _FileJob) -> None:
    """Close what an interrupted transfer left open; its journal stays for the next run."""
    if job.fd >= 0:
        os.close(job.fd)
        job.fd = -1
    if job.journal is not None:
        job.journal.close()
        job.journal = None
