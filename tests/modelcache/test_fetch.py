"""``fetch``: verified transfer, repair, atomic completion, the fast path and coordination."""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from pathlib import Path

import pytest

from tests.modelcache.helpers import CorruptingSource, CountingSource, write_model
from tiergate.modelcache import transfer as transfer_module
from tiergate.modelcache.cache import MARKER_NAME, STAGING_NAME, read_marker
from tiergate.modelcache.errors import (
    FetchError,
    LockTimeoutError,
    RetryableError,
    SourceError,
    SpaceError,
    VerifyError,
)
from tiergate.modelcache.fetch import fetch
from tiergate.modelcache.journal import Journal, journal_path
from tiergate.modelcache.lock import exclusive_lock, wait_for_marker
from tiergate.modelcache.manifest import write_manifest
from tiergate.modelcache.plan import FileEntry
from tiergate.modelcache.sources.local import LocalSource
from tiergate.modelcache.sources.ranged import RangeReader
from tiergate.modelcache.transfer import TransferSettings

SHARD1 = "model-00001-of-00002.safetensors"
SMALL_CHUNKS = TransferSettings(connections=4, chunk_bytes=1000, retries=2, backoff_max_s=0)


@pytest.fixture
def source_dir(tmp_path: Path) -> Path:
    root = tmp_path / "published"
    write_model(root)
    asyncio.run(write_manifest(root))
    return root


def same_tree(a: Path, b: Path) -> bool:
    """Whether ``b`` holds every model file of ``a`` with the same bytes."""
    files = [p for p in a.rglob("*") if p.is_file() and p.name != "tiergate-manifest.json"]
    return all((b / p.relative_to(a)).read_bytes() == p.read_bytes() for p in files)


async def test_fetch_installs_verifies_and_marks(source_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    source = CountingSource(source_dir)
    summary = await fetch(source, dest, settings=SMALL_CHUNKS)
    assert summary.status == "fetched"
    assert summary.files == 4
    assert summary.files_verified == 4
    assert summary.bytes_transferred == summary.bytes
    assert same_tree(source_dir, dest)
    assert not (dest / STAGING_NAME).exists()
    marker = read_marker(dest)
    assert marker is not None
    assert marker.digest == summary.digest
    assert {item.path: item.sha256 for item in marker.files} == {
        path: hashlib.sha256((source_dir / path).read_bytes()).hexdigest()
        for path in (item.path for item in marker.files)
    }


async def test_files_without_published_hash_get_one_recorded(tmp_path: Path) -> None:
    root = tmp_path / "published"
    write_model(root)  # no manifest: the source knows no sha256
    dest = tmp_path / "dest"
    await fetch(LocalSource(root.as_uri()), dest)
    marker = read_marker(dest)
    assert marker is not None
    config = next(item for item in marker.files if item.path == "config.json")
    assert config.sha256 == hashlib.sha256((root / "config.json").read_bytes()).hexdigest()


async def test_second_run_takes_the_fast_path(source_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    await fetch(LocalSource(source_dir.as_uri()), dest)
    again = CountingSource(source_dir)
    summary = await fetch(again, dest)
    assert summary.status == "cached"
    assert summary.bytes_transferred == 0
    assert not again.reads  # listed (for the plan digest) but not one byte read
    assert again.listings == 1


async def test_trusting_the_marker_does_not_even_list(source_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    await fetch(LocalSource(source_dir.as_uri()), dest, include=["*.safetensors"])
    again = CountingSource(source_dir)
    summary = await fetch(again, dest, include=["*.safetensors"], trust_marker=True)
    assert (summary.status, again.listings, sum(again.reads.values())) == ("cached", 0, 0)
    # Other globs are another plan: the marker is not trusted for it.
    other = CountingSource(source_dir)
    assert (await fetch(other, dest, trust_marker=True)).status == "fetched"
    assert other.listings == 1


async def test_corrupted_download_is_repaired(source_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    source = CorruptingSource(source_dir, SHARD1, times=1)
    summary = await fetch(source, dest, settings=SMALL_CHUNKS)
    assert summary.status == "fetched"
    assert summary.repairs == 1
    assert same_tree(source_dir, dest)
    size = (source_dir / SHARD1).stat().st_size
    assert source.bytes_read[SHARD1] == 2 * size  # the whole file once more, nothing else
    assert source.bytes_read["config.json"] == (source_dir / "config.json").stat().st_size


async def test_repeated_corruption_fails_and_marks_nothing(
    source_dir: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    source = CorruptingSource(source_dir, SHARD1, times=None)
    expected = hashlib.sha256((source_dir / SHARD1).read_bytes()).hexdigest()
    with pytest.raises(VerifyError) as caught:
        await fetch(source, dest, max_repairs=2)
    message = str(caught.value)
    assert message.startswith(f"{SHARD1}: sha256 mismatch: expected {expected}, actual ")
    assert "after 2 re-downloads" in message
    actual = message.split("actual ")[1].split(maxsplit=1)[0]
    assert len(actual) == 64
    assert actual != expected
    assert source.reads[SHARD1] == 3  # first try and two repairs
    assert read_marker(dest) is None
    assert not (dest / SHARD1).exists()


async def test_verify_detects_and_repairs_a_corrupt_cache(source_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    await fetch(LocalSource(source_dir.as_uri()), dest)
    intact = CountingSource(source_dir)
    clean = await fetch(intact, dest, verify_all=True)
    assert (clean.status, clean.files_verified, sum(intact.reads.values())) == ("cached", 4, 0)

    shard = dest / SHARD1
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0x01  # same size: only a hash can tell
    shard.write_bytes(bytes(data))
    assert (await fetch(LocalSource(source_dir.as_uri()), dest)).status == "cached"  # no hashing
    source = CountingSource(source_dir)
    summary = await fetch(source, dest, verify_all=True)
    assert summary.status == "repaired"
    assert summary.repaired_files == (SHARD1,)
    assert set(source.reads) == {SHARD1}
    assert same_tree(source_dir, dest)
    assert read_marker(dest) is not None


async def test_a_deleted_file_is_fetched_again(source_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    await fetch(LocalSource(source_dir.as_uri()), dest)
    (dest / "config.json").unlink()
    source = CountingSource(source_dir)
    summary = await fetch(source, dest)
    assert summary.status == "repaired"
    assert set(source.reads) == {"config.json"}  # the others are re-hashed, not re-read
    assert same_tree(source_dir, dest)


async def test_stale_marker_is_removed_before_a_new_fetch(source_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    await fetch(LocalSource(source_dir.as_uri()), dest)
    old = read_marker(dest)
    # The published model changes; the new fetch of it fails verification.
    (source_dir / "config.json").write_bytes(b'{"model_type": "tiny", "v": 2}')
    await write_manifest(source_dir)
    with pytest.raises(VerifyError, match=r"config\.json"):
        await fetch(CorruptingSource(source_dir, "config.json", times=None), dest, max_repairs=0)
    assert old is not None
    assert read_marker(dest) is None
    assert not (dest / MARKER_NAME).exists()


async def test_safetensors_inconsistency_fails_without_a_marker(tmp_path: Path) -> None:
    root = tmp_path / "published"
    write_model(root)
    shard = root / SHARD1
    shard.write_bytes(shard.read_bytes()[:-10])  # truncated where it was published
    dest = tmp_path / "dest"
    with pytest.raises(VerifyError, match=f"{SHARD1}: tensor"):
        await fetch(LocalSource(root.as_uri()), dest)
    assert read_marker(dest) is None


async def test_globs_matching_nothing_are_an_error(source_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"no files match the include/exclude globs"):
        await fetch(LocalSource(source_dir.as_uri()), tmp_path / "dest", include=["*.gguf"])
    assert read_marker(tmp_path / "dest") is None


class HugeSource:
    """Lists a file far bigger than any disk; reading it fails the test."""

    url = "file:///huge"

    async def list_files(self) -> list[FileEntry]:
        return [FileEntry("weights.bin", 2**62)]

    async def reader(self, path: str) -> RangeReader:
        pytest.fail("no byte may move when the plan does not fit")

    async def close(self) -> None:
        pass


async def test_no_space_refuses_before_any_byte_moves(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match=rf"needs .* \({2**62} bytes\) more"):
        await fetch(HugeSource(), tmp_path / "dest")
    assert read_marker(tmp_path / "dest") is None


async def test_eight_concurrent_fetches_read_the_source_once(
    source_dir: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    reads: Counter[str] = Counter()
    sources = [CountingSource(source_dir, reads) for _ in range(8)]
    summaries = await asyncio.gather(
        *(fetch(source, dest, settings=SMALL_CHUNKS) for source in sources)
    )
    assert sorted(summary.status for summary in summaries) == ["cached"] * 7 + ["fetched"]
    read_bytes = Counter[str]()
    for source in sources:
        read_bytes.update(source.bytes_read)
    assert dict(read_bytes) == {path: (source_dir / path).stat().st_size for path in read_bytes}
    assert len(read_bytes) == 4
    assert same_tree(source_dir, dest)


async def test_lock_timeout(source_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    async with exclusive_lock(dest) as waited:
        assert not waited
        with pytest.raises(LockTimeoutError, match=r"\.tiergate\.lock: another fetcher"):
            await fetch(LocalSource(source_dir.as_uri()), dest, lock_timeout_s=0.2)
    summary = await fetch(LocalSource(source_dir.as_uri()), dest, lock_timeout_s=5)
    assert summary.status == "fetched"


async def test_worker_waits_for_the_leader_then_copies_from_it(
    source_dir: Path, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"  # the leader's DEST, on a filesystem all nodes mount
    worker_dest = tmp_path / "worker"
    waiting = asyncio.create_task(wait_for_marker(shared, timeout_s=30, poll_s=0.01))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await fetch(LocalSource(source_dir.as_uri()), shared)
    leader_marker = await asyncio.wait_for(waiting, timeout=30)
    from_leader = CountingSource(shared)
    listed = {entry.path: entry.sha256 for entry in await from_leader.list_files()}
    assert listed == {item.path: item.sha256 for item in leader_marker.files}
    summary = await fetch(from_leader, worker_dest)
    assert summary.status == "fetched"
    assert same_tree(source_dir, worker_dest)


async def test_waiting_for_a_leader_is_bounded(tmp_path: Path) -> None:
    with pytest.raises(LockTimeoutError, match=r"leader's marker did not appear within 0\.1 s"):
        await wait_for_marker(tmp_path, timeout_s=0.1, poll_s=0.01)


def stage_complete(
    staged: Path, data: bytes, chunk_bytes: int, sha256: str | None, version: str | None
) -> None:
    """A staged file as a killed run leaves it once whole: its bytes and its full journal."""
    staged.parent.mkdir(parents=True, exist_ok=True)
    staged.write_bytes(data)
    journal = Journal.create(journal_path(staged), len(data), sha256, chunk_bytes, version=version)
    for index in range(-(-len(data) // chunk_bytes)):
        journal.record(index, durable=True)
    journal.close()


async def test_resumes_from_what_is_staged(source_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    staged = dest / STAGING_NAME / "config.json"
    data = (source_dir / "config.json").read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()  # the manifest's
    stage_complete(staged, data, SMALL_CHUNKS.chunk_bytes, sha256, version=None)
    source = CountingSource(source_dir)
    summary = await fetch(source, dest, settings=SMALL_CHUNKS)
    assert "config.json" not in source.reads
    assert summary.status == "fetched"
    assert same_tree(source_dir, dest)


@pytest.mark.parametrize("left_behind", ["no journal", "another version"])
async def test_a_staged_file_the_source_has_changed_since_is_fetched_again(
    tmp_path: Path, left_behind: str
) -> None:
    """No file has a published hash. A killed run staged config.json whole; the source then
    changed it (same size): the new one is fetched, never the old one installed and marked."""
    source_dir = tmp_path / "published"
    write_model(source_dir)  # no manifest
    dest = tmp_path / "dest"
    staged = dest / STAGING_NAME / "config.json"
    new = (source_dir / "config.json").read_bytes()
    old = bytes(b"x" * len(new))
    if left_behind == "no journal":
        staged.parent.mkdir(parents=True)
        staged.write_bytes(old)
    else:
        stage_complete(staged, old, SMALL_CHUNKS.chunk_bytes, None, version='"old-etag"')
    source = CountingSource(source_dir, versions={"config.json": '"new-etag"'})
    summary = await fetch(source, dest, settings=SMALL_CHUNKS)
    assert source.reads["config.json"] >= 1
    assert summary.status == "fetched"
    assert (dest / "config.json").read_bytes() == new
    assert same_tree(source_dir, dest)


async def test_a_journal_ahead_of_the_disk_is_caught_by_the_hash(
    source_dir: Path, tmp_path: Path
) -> None:
    """After a machine crash the journal may name chunks whose bytes never reached the disk
    (chunks of hashed files are not fsync'ed one by one): the sha256 finds it, and the file
    is fetched again whole."""
    dest = tmp_path / "dest"
    size = (source_dir / SHARD1).stat().st_size
    chunks = -(-size // SMALL_CHUNKS.chunk_bytes)
    staged = dest / STAGING_NAME / SHARD1
    staged.parent.mkdir(parents=True)
    staged.write_bytes(bytes(size))  # what the disk kept: zeros
    expected = hashlib.sha256((source_dir / SHARD1).read_bytes()).hexdigest()
    journal = Journal.create(journal_path(staged), size, expected, SMALL_CHUNKS.chunk_bytes)
    for index in range(chunks - 1):  # all but the last chunk "done"
        journal.record(index, durable=False)
    journal.close()
    source = CountingSource(source_dir)
    summary = await fetch(source, dest, settings=SMALL_CHUNKS)
    assert summary.status == "fetched"
    assert summary.repairs == 1
    last_chunk = size - (chunks - 1) * SMALL_CHUNKS.chunk_bytes
    assert source.bytes_read[SHARD1] == last_chunk + size  # the rest, then all of it again
    assert same_tree(source_dir, dest)


@pytest.mark.parametrize("published", [True, False])
async def test_chunks_are_fsynced_only_when_no_hash_checks_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, published: bool
) -> None:
    root = tmp_path / "published"
    files = write_model(root)
    if published:
        await write_manifest(root)
    synced: list[int] = []
    monkeypatch.setattr(transfer_module, "_fdatasync", synced.append)
    await fetch(LocalSource(root.as_uri()), tmp_path / "dest", settings=SMALL_CHUNKS)
    sizes = [(root / path).stat().st_size for path in files]
    chunks = sum(-(-size // SMALL_CHUNKS.chunk_bytes) for size in sizes if size)
    non_empty = sum(1 for size in sizes if size)
    # Every file once when complete (before the marker vouches for it); every chunk too when
    # nothing else can tell a lost write.
    assert len(synced) == (non_empty if published else non_empty + chunks)


class _FlakyListing(CountingSource):
    """Its first ``failures`` listings fail as a throttled store's would (503 SlowDown)."""

    def __init__(self, root: Path, failures: int) -> None:
        super().__init__(root)
        self.failures = failures

    async def list_files(self) -> list[FileEntry]:
        if self.failures > 0:
            self.failures -= 1
            self.listings += 1
            raise RetryableError("s3://b/m: 503 SlowDown: Please reduce your request rate.")
        return await super().list_files()


async def test_a_throttled_listing_is_retried_like_a_read(source_dir: Path, tmp_path: Path) -> None:
    source = _FlakyListing(source_dir, failures=2)
    summary = await fetch(source, tmp_path / "dest", settings=SMALL_CHUNKS)
    assert (summary.status, summary.retries, source.listings) == ("fetched", 2, 3)
    assert same_tree(source_dir, tmp_path / "dest")

    always = _FlakyListing(source_dir, failures=100)
    with pytest.raises(FetchError, match=r"giving up after 2 retries: s3://b/m: 503 SlowDown"):
        await fetch(always, tmp_path / "other", settings=SMALL_CHUNKS)
    assert always.listings == 3
    assert read_marker(tmp_path / "other") is None
