"""The transfer engine against a local range server: correct bytes, each fault recovered or
reported, resume after kill -9 and after a full disk."""

from __future__ import annotations

import asyncio
import errno
import os
import random
import re
import signal
import sys
from pathlib import Path

import pytest

from tests.modelcache_transfer.conftest import Sleeps, fetch
from tests.modelcache_transfer.range_server import Fault, RangeServer, random_bytes
from tests.polling import eventually
from tiergate.modelcache import transfer as transfer_module
from tiergate.modelcache.errors import FetchError, RetryableError, SourceError, SpaceError
from tiergate.modelcache.journal import JOURNAL_SUFFIX
from tiergate.modelcache.plan import FileEntry, Plan
from tiergate.modelcache.sources.http import HttpSource
from tiergate.modelcache.transfer import TransferSettings, transfer

KIB = 1 << 10
CHUNK = 256 * KIB
SETTINGS = TransferSettings(connections=4, chunk_bytes=CHUNK, stall_s=30.0)


def model_files() -> dict[str, bytes]:
    return {
        "model-00001-of-00002.safetensors": random_bytes(3 * 1024 * KIB, seed=1),
        "model-00002-of-00002.safetensors": random_bytes(1024 * KIB + 5, seed=2),
        "nested/dir/config.json": random_bytes(300, seed=3),
        "empty.txt": b"",
    }


def assert_staged(staging: Path, files: dict[str, bytes], chunk: int = CHUNK) -> None:
    for path, data in files.items():
        assert (staging / path).read_bytes() == data, path
    # Each file's journal stays, recording every chunk: what says the staged file is whole.
    assert journaled_chunks(staging) == sum(-(-len(data) // chunk) for data in files.values())


def journaled_chunks(staging: Path) -> int:
    """Chunk lines recorded in all journals under ``staging`` (the header line excluded)."""
    return sum(
        max(0, journal.read_bytes().count(b"\n") - 1)
        for journal in staging.rglob(f"*{JOURNAL_SUFFIX}")
    )


async def test_whole_transfer_writes_every_byte(tmp_path: Path) -> None:
    files = model_files()
    async with RangeServer(files) as server:
        run = await fetch(server.url(), tmp_path, SETTINGS)
    assert_staged(tmp_path, files)
    total = sum(map(len, files.values()))
    assert run.stats.bytes_fetched == total == server.served
    assert run.stats.bytes_resumed == 0
    assert run.stats.retries == 0
    assert run.stats.files == len(files)
    assert sum(run.progress) == total
    # Each file with bytes is announced once, when complete on disk (hashing may start then);
    # an empty file is made whole before any transfer and left to the caller.
    assert sorted(run.done) == sorted(path for path, data in files.items() if data)
    assert all(end - start <= CHUNK for _, start, end in server.requests)
    assert 1 <= server.peak_active <= SETTINGS.connections


async def test_second_run_on_complete_staging_fetches_nothing(tmp_path: Path) -> None:
    files = model_files()
    async with RangeServer(files) as server:
        await fetch(server.url(), tmp_path, SETTINGS)
        server.served = 0
        run = await fetch(server.url(), tmp_path, SETTINGS)
    assert server.served == run.stats.bytes_fetched == 0
    assert run.done == []  # nothing written by this run: nothing announced
    assert run.stats.bytes_resumed == sum(map(len, files.values())) == sum(run.progress)
    assert_staged(tmp_path, files)


FAULTS = {
    "drop mid-range": Fault("drop"),
    "500": Fault("status", status=500),
    "429 with Retry-After": Fault("status", status=429, retry_after="7"),
    "503 with Retry-After": Fault("status", status=503, retry_after="3"),
    "short body": Fault("short"),
    "long body": Fault("long"),
    "200 ignoring Range": Fault("ignore_range", skip=1),
}


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
async def test_fault_is_retried_and_recovered(tmp_path: Path, sleeps: Sleeps, fault: Fault) -> None:
    files = model_files()
    async with RangeServer(files) as server:
        server.faults.append(fault)
        run = await fetch(server.url(), tmp_path, SETTINGS, sleeps)
        assert not server.faults  # the fault was used
    assert_staged(tmp_path, files)
    assert run.stats.retries == 1
    assert len(sleeps.delays) == 1
    if fault.retry_after is not None:  # the server's wait, plus jitter below the base
        wait = float(fault.retry_after)
        assert wait <= sleeps.delays[0] < wait + SETTINGS.backoff_base_s
    else:
        assert 0.0 <= sleeps.delays[0] <= SETTINGS.backoff_base_s


async def test_dropped_range_resumes_within_the_chunk(tmp_path: Path, sleeps: Sleeps) -> None:
    files = {"weights.bin": random_bytes(4 * CHUNK, seed=4)}
    settings = TransferSettings(connections=1, chunk_bytes=4 * CHUNK)
    async with RangeServer(files) as server:
        server.faults.append(Fault("drop"))
        run = await fetch(server.url(), tmp_path, settings, sleeps)
    assert_staged(tmp_path, files, settings.chunk_bytes)
    assert run.stats.retries == 1
    (_, first_start, first_end), (_, retry_start, retry_end) = server.requests
    assert (first_start, first_end, retry_end) == (0, 4 * CHUNK, 4 * CHUNK)
    # The retry asks only for what had not arrived; nothing is written twice.
    assert retry_start == run.stats.bytes_fetched - (retry_end - retry_start)


async def test_stalled_read_is_abandoned_and_retried(tmp_path: Path, sleeps: Sleeps) -> None:
    files = {"weights.bin": random_bytes(2 * CHUNK, seed=5)}
    settings = TransferSettings(connections=2, chunk_bytes=CHUNK, stall_s=0.5)
    async with RangeServer(files) as server:
        server.faults.append(Fault("stall"))
        run = await fetch(server.url(), tmp_path, settings, sleeps)
        assert not server.faults
    assert_staged(tmp_path, files)
    assert run.stats.retries >= 1
    assert len(server.requests) >= 3


async def test_corrupted_bytes_are_left_to_verification(tmp_path: Path) -> None:
    files = {"weights.bin": random_bytes(2 * CHUNK, seed=6)}
    async with RangeServer(files) as server:
        server.faults.append(Fault("corrupt"))
        run = await fetch(server.url(), tmp_path, SETTINGS)
    staged = (tmp_path / "weights.bin").read_bytes()
    assert run.stats.retries == 0
    assert len(staged) == len(files["weights.bin"])
    differing = [
        i for i, (a, b) in enumerate(zip(staged, files["weights.bin"], strict=True)) if a != b
    ]
    assert len(differing) == 1


async def test_not_found_fails_fast_with_the_url(tmp_path: Path, sleeps: Sleeps) -> None:
    files = {"weights.bin": random_bytes(2 * CHUNK, seed=8)}
    async with RangeServer(files) as server:
        server.faults.append(Fault("status", status=404, times=None))
        with pytest.raises(SourceError) as caught:
            await fetch(server.url(), tmp_path, SETTINGS, sleeps)
        url = server.url("weights.bin")
    assert url in str(caught.value)
    assert "404" in str(caught.value)
    assert sleeps.delays == []


async def test_retries_exhausted_names_file_and_range(tmp_path: Path, sleeps: Sleeps) -> None:
    files = {"weights.bin": random_bytes(CHUNK + 10, seed=9)}
    settings = TransferSettings(connections=1, chunk_bytes=CHUNK, retries=3)
    async with RangeServer(files) as server:
        server.faults.append(Fault("status", status=500, path="weights.bin", skip=1, times=None))
        with pytest.raises(FetchError) as caught:
            await fetch(server.url(), tmp_path, settings, sleeps)
    assert type(caught.value) is FetchError
    assert f"weights.bin bytes {CHUNK}-{CHUNK + 9}" in str(caught.value)
    assert "3 retries" in str(caught.value)
    assert isinstance(caught.value.__cause__, RetryableError)
    assert len(sleeps.delays) == 3
    for attempt, delay in enumerate(sleeps.delays, start=1):
        assert 0.0 <= delay <= settings.backoff_base_s * 2 ** (attempt - 1)
    # The first chunk is recorded: a later run resumes from it.
    assert journaled_chunks(tmp_path) == 1


async def test_resume_after_kill_refetches_at_most_the_chunks_in_flight(tmp_path: Path) -> None:
    files = model_files()
    total = sum(map(len, files.values()))
    connections, done_before_kill = 4, 5
    async with RangeServer(files) as server:
        # The first requests are answered; the later ones send half their range and hang.
        server.faults.append(Fault("stall", skip=done_before_kill, times=None))
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            str(Path(__file__).with_name("_child.py")),
            server.url(),
            str(tmp_path),
            str(connections),
            str(CHUNK),
        )
        try:
            await eventually(
                lambda: journaled_chunks(tmp_path) == done_before_kill,
                timeout_s=30.0,
                what="chunks journaled by the child",
            )
            await eventually(
                lambda: server.active == connections, what="the child's reads in flight"
            )
        finally:
            child.send_signal(signal.SIGKILL)
            assert await child.wait() == -signal.SIGKILL
        served_first = server.served
        server.faults.clear()
        server.served = 0
        settings = TransferSettings(connections=connections, chunk_bytes=CHUNK)
        run = await fetch(server.url(), tmp_path, settings)
    assert_staged(tmp_path, files)
    assert run.stats.bytes_resumed == done_before_kill * CHUNK
    assert server.served == run.stats.bytes_fetched == total - done_before_kill * CHUNK
    assert served_first > done_before_kill * CHUNK  # some in-flight bytes were lost
    assert server.served <= (total - served_first) + connections * CHUNK


async def test_disk_full_raises_space_error_and_keeps_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {"weights.bin": random_bytes(8 * CHUNK, seed=10)}
    settings = TransferSettings(connections=1, chunk_bytes=CHUNK)
    real_write = transfer_module._write_all

    def write_until_full(fd: int, data: memoryview, offset: int) -> None:
        if offset >= 3 * CHUNK:  # the disk fills once three chunks are written
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(fd, data, offset)

    monkeypatch.setattr(transfer_module, "_write_all", write_until_full)
    async with RangeServer(files) as server:
        with pytest.raises(SpaceError) as caught:
            await fetch(server.url(), tmp_path, settings)
        assert str(tmp_path) in str(caught.value)
        assert f"{5 * CHUNK} more bytes" in str(caught.value)
        assert journaled_chunks(tmp_path) == 3

        monkeypatch.setattr(transfer_module, "_write_all", real_write)
        server.served = 0
        run = await fetch(server.url(), tmp_path, settings)
    assert_staged(tmp_path, files)
    assert run.stats.bytes_resumed == 3 * CHUNK
    assert server.served == run.stats.bytes_fetched == 5 * CHUNK


async def test_journal_for_another_chunk_size_starts_the_file_over(tmp_path: Path) -> None:
    files = {"weights.bin": random_bytes(4 * CHUNK, seed=11)}
    async with RangeServer(files) as server:
        server.faults.append(Fault("status", status=404, skip=2, times=None))
        with pytest.raises(SourceError):
            await fetch(server.url(), tmp_path, TransferSettings(connections=1, chunk_bytes=CHUNK))
        assert journaled_chunks(tmp_path) == 2
        server.faults.clear()
        server.served = 0
        settings = TransferSettings(connections=2, chunk_bytes=2 * CHUNK)
        run = await fetch(server.url(), tmp_path, settings)
    assert_staged(tmp_path, files, settings.chunk_bytes)
    assert run.stats.bytes_resumed == 0
    assert server.served == 4 * CHUNK


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../escape.bin", "an empty, '.' or '..' part"),
        ("/etc/passwd", "absolute"),
        ("a\\b.bin", "backslash"),
        ("a//b.bin", "an empty, '.' or '..' part"),
        ("./a.bin", "an empty, '.' or '..' part"),
        ("", "empty"),
    ],
)
def test_a_plan_refuses_paths_that_leave_the_model_root(path: str, reason: str) -> None:
    match = f"s3://b/m: refusing unsafe file path .*{re.escape(reason)}"
    with pytest.raises(SourceError, match=match):
        Plan("s3://b/m", (FileEntry("ok.bin", 1), FileEntry(path, 10)))


def test_retry_delay_full_jitter_and_retry_after() -> None:
    settings = TransferSettings(backoff_base_s=0.5, backoff_max_s=4.0, retry_after_max_s=60.0)
    rng = random.Random(1)
    for attempt in range(1, 12):
        delay = settings.retry_delay_s(attempt, None, rng)
        assert 0.0 <= delay <= min(4.0, 0.5 * 2 ** (attempt - 1))
    # The server's wait (capped), plus jitter below the base so that refusals spread out.
    waits = [settings.retry_delay_s(3, 12.0, rng) for _ in range(20)]
    assert all(12.0 <= wait < 12.5 for wait in waits)
    assert len(set(waits)) == len(waits)
    assert 60.0 <= settings.retry_delay_s(3, 3600.0, rng) < 60.5


@pytest.mark.parametrize(
    "bad",
    [{"connections": 0}, {"chunk_bytes": 0}, {"retries": -1}, {"stall_s": 0.0}],
)
def test_settings_refuse_nonsense(bad: dict[str, int | float]) -> None:
    with pytest.raises(ValueError, match="must"):
        TransferSettings(**bad)  # type: ignore[arg-type]


async def test_a_chunked_body_longer_than_its_range_is_never_committed(
    tmp_path: Path, sleeps: Sleeps
) -> None:
    """A 206 in chunked encoding carries the 10 bytes asked for, then 5 more: none of that
    answer is kept (the bytes before the surplus were written), every retry asks for the
    whole range again, and after the retries the chunk is not in the journal."""
    requests: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        requests.append(next(line for line in head.split(b"\r\n") if line.startswith(b"Range")))
        writer.write(
            b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/10\r\n"
            b"Transfer-Encoding: chunked\r\n\r\na\r\nAAAAAAAAAA\r\n5\r\nEXTRA\r\n0\r\n\r\n"
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    source = HttpSource(f"http://127.0.0.1:{port}/f")
    settings = TransferSettings(connections=1, chunk_bytes=CHUNK, retries=2)
    try:
        plan = Plan("x", (FileEntry("f", 10),))
        with pytest.raises(FetchError, match=r"giving up after 2 retries: .*long read"):
            await transfer(source, plan, tmp_path, settings, sleep=sleeps)
    finally:
        await source.close()
        server.close()
        await server.wait_closed()
    assert requests == [b"Range: bytes=0-9"] * 3
    assert journaled_chunks(tmp_path) == 0


def test_starting_writeback_is_only_a_hint(tmp_path: Path) -> None:
    """sync_file_range(WRITE) where libc has it: the bytes stay as written, and a descriptor
    it cannot use (closed, a pipe) changes nothing and raises nothing."""
    start = transfer_module._writeback_starter()
    path = tmp_path / "f.bin"
    data = random_bytes(3 * CHUNK, seed=21)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, data, 0)
        start(fd, CHUNK, CHUNK)
        assert os.pread(fd, len(data), 0) == data
    finally:
        os.close(fd)
    start(fd, 0, CHUNK)  # closed: EBADF, ignored
    read_end, write_end = os.pipe()
    try:
        start(write_end, 0, 10)  # a pipe: ESPIPE, ignored
    finally:
        os.close(read_end)
        os.close(write_end)
    assert path.read_bytes() == data
