"""The manifest round trip, and the ``file://`` source that uses it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tiergate.modelcache.errors import SourceError
from tiergate.modelcache.manifest import MANIFEST_NAME, read_manifest, write_manifest
from tiergate.modelcache.plan import FileEntry
from tiergate.modelcache.sources.local import LocalSource, path_from_url
from tiergate.modelcache.sources.ranged import read_bytes
from tiergate.modelcache.verify import sha256_file, sha256_files


def make_tree(root: Path) -> dict[str, bytes]:
    files = {
        "config.json": b"{}",
        "weights/a.bin": bytes(range(256)) * 1000,
        "empty.txt": b"",
    }
    for path, content in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(content)
    return files


async def test_manifest_round_trip(tmp_path: Path) -> None:
    files = make_tree(tmp_path)
    (tmp_path / ".tiergate.lock").write_bytes(b"")  # bookkeeping is no model file
    written = await write_manifest(tmp_path)
    expected = [
        FileEntry(path, len(content), hashlib.sha256(content).hexdigest())
        for path, content in sorted(files.items())
    ]
    assert written == expected
    assert read_manifest(tmp_path) == expected
    assert (tmp_path / MANIFEST_NAME).read_text().startswith("{")


async def test_rewriting_a_manifest_does_not_list_the_manifest(tmp_path: Path) -> None:
    make_tree(tmp_path)
    first = await write_manifest(tmp_path)
    assert await write_manifest(tmp_path) == first


def test_invalid_manifest_is_a_source_error_naming_the_field(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).write_text('{"version": 1, "files": [{"path": "a", "size": -1}]}')
    with pytest.raises(SourceError, match=r"tiergate-manifest.json: invalid manifest at files\.0"):
        read_manifest(tmp_path)


async def test_sha256_matches_hashlib_in_parallel(tmp_path: Path) -> None:
    files = make_tree(tmp_path)
    seen: list[int] = []
    digests = await sha256_files(
        {path: tmp_path / path for path in files}, parallel=2, on_progress=seen.append
    )
    assert digests == {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}
    assert sum(seen) == sum(len(data) for data in files.values())
    small_blocks = await sha256_file(tmp_path / "weights/a.bin", block_bytes=1000)
    assert small_blocks == digests["weights/a.bin"]


async def test_local_source_lists_with_manifest_hashes_and_reads_ranges(tmp_path: Path) -> None:
    files = make_tree(tmp_path)
    await write_manifest(tmp_path)
    source = LocalSource(tmp_path.as_uri(), chunk_bytes=1000)
    listed = await source.list_files()
    assert [entry.path for entry in listed] == sorted(files)
    assert all(entry.sha256 for entry in listed)
    reader = await source.reader("weights/a.bin")
    chunks: list[bytes] = []
    reader.read_into(500, 2800, lambda piece: chunks.append(bytes(piece)), 1.0)
    assert [len(chunk) for chunk in chunks] == [1000, 1000, 300]
    assert b"".join(chunks) == files["weights/a.bin"][500:2800]


async def test_local_source_without_manifest_has_no_hashes(tmp_path: Path) -> None:
    make_tree(tmp_path)
    listed = await LocalSource(tmp_path.as_uri()).list_files()
    assert [entry.sha256 for entry in listed] == [None, None, None]


async def test_local_source_errors_name_the_url(tmp_path: Path) -> None:
    source = LocalSource((tmp_path / "missing").as_uri())
    with pytest.raises(SourceError, match="missing: no such directory"):
        await source.list_files()
    make_tree(tmp_path)
    source = LocalSource(tmp_path.as_uri())
    with pytest.raises(SourceError, match=r"gone\.bin"):
        read_bytes(await source.reader("gone.bin"), 0, 10)
    with pytest.raises(SourceError, match="leaves the source directory"):
        await source.reader("../etc/passwd")


def test_file_urls() -> None:
    assert path_from_url("file:///data/my%20model") == Path("/data/my model")
    assert path_from_url("file://localhost/data") == Path("/data")
    assert path_from_url("file:///fsx/a%23b") == Path("/fsx/a#b")
    for bad in ("file://host/data", "s3://b/p", "file:relative"):
        with pytest.raises(SourceError):
            path_from_url(bad)
    for bad in ("file:///fsx/a#b", "file:///fsx/a?version=2"):
        with pytest.raises(SourceError, match="no query or fragment"):
            path_from_url(bad)


async def test_a_stale_manifest_is_a_source_error_naming_the_file(tmp_path: Path) -> None:
    """A manifest published before a file was rewritten would cost repairs and end in a hash
    mismatch; its sizes, checked while listing, say what is wrong at once."""
    make_tree(tmp_path)
    await write_manifest(tmp_path)
    (tmp_path / "config.json").write_bytes(b'{"changed": true}')
    with pytest.raises(SourceError, match=r"stale: it says config\.json has 2 bytes, .* 17"):
        await LocalSource(tmp_path.as_uri()).list_files()


async def test_a_manifest_naming_a_missing_file_is_a_source_error(tmp_path: Path) -> None:
    make_tree(tmp_path)
    await write_manifest(tmp_path)
    (tmp_path / "weights" / "a.bin").unlink()
    with pytest.raises(SourceError, match=r"names files that are not there: weights/a\.bin"):
        await LocalSource(tmp_path.as_uri()).list_files()
