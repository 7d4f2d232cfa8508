"""HttpSource against the local range server: listing a file or a manifest directory, ranged
reads, and how HTTP answers become fetcher errors."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from email.utils import formatdate

import aiohttp
import orjson
import pytest

from tests.modelcache_transfer.range_server import Fault, RangeServer, random_bytes
from tiergate.modelcache.errors import RetryableError, SourceError
from tiergate.modelcache.plan import FileEntry
from tiergate.modelcache.sources.http import HttpSource, sha256_from_etag
from tiergate.modelcache.sources.ranged import parse_retry_after, read_bytes

DATA = random_bytes(100_000, seed=20)
SHA = hashlib.sha256(DATA).hexdigest()


async def read_all(source: HttpSource, path: str, start: int, end: int) -> bytes:
    """Read as the transfer does: in a worker thread (the server runs on this event loop)."""
    return await asyncio.to_thread(read_bytes, await source.reader(path), start, end, 5.0)


async def test_single_file_is_sized_by_head_with_sha256_from_the_etag() -> None:
    async with RangeServer({"w.bin": DATA}, etags={"w.bin": f'"{SHA}"'}) as server:
        source = HttpSource(server.url("w.bin"))
        try:
            # The ETag is also the file's version: a changed file is never resumed.
            listed = [FileEntry("w.bin", len(DATA), SHA, version=f'"{SHA}"')]
            assert await source.list_files() == listed
            assert await read_all(source, "w.bin", 10, 5000) == DATA[10:5000]
        finally:
            await source.close()


async def test_linked_etag_wins_and_other_etags_give_no_sha256() -> None:
    etags = {"a.bin": '"not-a-hash"', "b.bin": 'W/"abc123"'}
    async with RangeServer(
        {"a.bin": DATA, "b.bin": DATA}, etags=etags, linked_etags={"a.bin": SHA.upper()}
    ) as server:
        for path, expected in [("a.bin", SHA), ("b.bin", None)]:
            source = HttpSource(server.url(path))
            try:
                listed = [FileEntry(path, len(DATA), expected, version=etags[path])]
                assert await source.list_files() == listed
            finally:
                await source.close()


@pytest.mark.parametrize("suffix", ["", "tiergate-manifest.json"])
async def test_directory_is_listed_from_its_manifest(suffix: str) -> None:
    files = {"z/last.bin": DATA[:10], "a b.bin": DATA}
    async with RangeServer(files) as server:
        source = HttpSource(server.url(suffix))
        try:
            listed = await source.list_files()
            assert [entry.path for entry in listed] == ["a b.bin", "z/last.bin"]
            assert listed[0] == FileEntry("a b.bin", len(DATA), SHA)
            assert await read_all(source, "a b.bin", 99_000, 100_000) == DATA[99_000:]
            assert await read_all(source, "z/last.bin", 0, 10) == DATA[:10]
        finally:
            await source.close()


@pytest.mark.parametrize(
    "manifest",
    [
        b"not json",
        orjson.dumps({"version": 2, "files": []}),
        orjson.dumps({"version": 1, "files": [{"path": "../up.bin", "size": 1}]}),
        orjson.dumps({"version": 1, "files": [{"path": "a.bin", "size": -1}]}),
        orjson.dumps({"version": 1, "files": [{"path": "a.bin", "size": 1, "sha256": "abc"}]}),
    ],
)
async def test_bad_manifest_is_a_source_error(manifest: bytes) -> None:
    async with RangeServer({}, manifest=manifest) as server:
        source = HttpSource(server.url())
        try:
            with pytest.raises(SourceError, match=r"tiergate-manifest\.json: invalid manifest"):
                await source.list_files()
        finally:
            await source.close()


async def test_missing_file_is_a_source_error_naming_the_url() -> None:
    async with RangeServer({}) as server:
        source = HttpSource(server.url("gone.bin"))
        try:
            with pytest.raises(SourceError, match="404") as caught:
                await source.list_files()
            assert server.url("gone.bin") in str(caught.value)
        finally:
            await source.close()


@pytest.mark.parametrize(
    ("fault", "error", "retry_after"),
    [
        (Fault("status", status=401), SourceError, None),
        (Fault("status", status=403), SourceError, None),
        (Fault("status", status=429, retry_after="12"), RetryableError, 12.0),
        (Fault("status", status=502), RetryableError, None),
        (Fault("ignore_range"), RetryableError, None),
        (Fault("drop"), RetryableError, None),
    ],
)
async def test_read_errors_are_mapped(
    fault: Fault, error: type[Exception], retry_after: float | None
) -> None:
    async with RangeServer({"w.bin": DATA}) as server:
        server.faults.append(fault)
        source = HttpSource(server.url("w.bin"))
        try:
            with pytest.raises(error) as caught:
                await read_all(source, "w.bin", 1000, 90_000)
        finally:
            await source.close()
    assert server.url("w.bin") in str(caught.value)
    if isinstance(caught.value, RetryableError):
        assert caught.value.retry_after_s == retry_after


async def test_whole_file_200_is_accepted_for_the_whole_range() -> None:
    async with RangeServer({"w.bin": DATA}) as server:
        server.faults.append(Fault("ignore_range"))
        source = HttpSource(server.url("w.bin"))
        try:
            assert await read_all(source, "w.bin", 0, len(DATA)) == DATA
        finally:
            await source.close()


async def test_retry_after_as_http_date() -> None:
    async with RangeServer({"w.bin": DATA}) as server:
        server.faults.append(
            Fault("status", status=503, retry_after=formatdate(usegmt=True, timeval=None))
        )
        source = HttpSource(server.url("w.bin"))
        try:
            with pytest.raises(RetryableError) as caught:
                await read_all(source, "w.bin", 0, 10)
        finally:
            await source.close()
    assert caught.value.retry_after_s is not None
    assert caught.value.retry_after_s >= 0.0


async def test_refused_connection_is_retryable() -> None:
    server = await RangeServer({"w.bin": DATA}).start()
    url = server.url("w.bin")
    await server.close()
    source = HttpSource(url)
    try:
        with pytest.raises(RetryableError, match="HEAD"):
            await source.list_files()
    finally:
        await source.close()


async def test_a_given_session_is_used_and_left_open() -> None:
    async with RangeServer({"w.bin": DATA}) as server, aiohttp.ClientSession() as session:
        source = HttpSource(server.url("w.bin"), session=session)
        assert await read_all(source, "w.bin", 0, 100) == DATA[:100]
        await source.close()
        assert not session.closed


def test_non_http_url_is_refused() -> None:
    with pytest.raises(SourceError, match="not an http"):
        HttpSource("ftp://example.org/w.bin")


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now) == 30.0
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_sha256_from_etag() -> None:
    assert sha256_from_etag(f'"{SHA}"') == SHA
    assert sha256_from_etag(f'W/"{SHA.upper()}"') == SHA
    assert sha256_from_etag('"d41d8cd98f00b204e9800998ecf8427e"') is None
    assert sha256_from_etag(None) is None


async def test_a_url_signed_for_get_only_is_sized_by_its_first_byte() -> None:
    """A pre-signed S3 or GCS URL signs the method: its ``HEAD`` is refused (403), so the file
    is sized by a ``GET`` of byte 0. The signature shows nowhere: not in the source's name."""
    async with RangeServer({"w.bin": DATA}, etags={"w.bin": '"v1"'}) as server:
        server.head_status = 403
        source = HttpSource(server.url("w.bin") + "?X-Amz-Signature=SECRET&X-Amz-Expires=60")
        try:
            listed = await source.list_files()
            assert listed == [FileEntry("w.bin", len(DATA), None, version='"v1"')]
            assert await read_all(source, "w.bin", 0, len(DATA)) == DATA
            assert "SECRET" not in source.url
            assert source.url.endswith("/m/w.bin?…")
        finally:
            await source.close()
    assert server.requests[0] == ("w.bin", 0, 1)


async def test_refusals_name_the_url_without_its_query_or_user_info() -> None:
    async with RangeServer({"w.bin": DATA}) as server:
        server.faults.append(Fault("status", status=403, times=None))
        url = server.url("w.bin").replace("//", "//user:PASSWORD@", 1) + "?X-Amz-Signature=SECRET"
        source = HttpSource(url)
        try:
            await source.list_files()
            with pytest.raises(SourceError) as caught:
                await read_all(source, "w.bin", 0, 100)
        finally:
            await source.close()
    message = str(caught.value)
    assert "403" in message
    assert "/m/w.bin?…" in message
    for secret in ("SECRET", "PASSWORD", "user"):
        assert secret not in message


async def test_user_info_in_the_url_is_sent_as_basic_authorization() -> None:
    async with RangeServer({"w.bin": DATA}) as server:
        server.required_auth = "Basic " + base64.b64encode(b"user:p@ss").decode()
        source = HttpSource(server.url("w.bin").replace("//", "//user:p%40ss@", 1))
        try:
            assert [entry.size for entry in await source.list_files()] == [len(DATA)]
            assert await read_all(source, "w.bin", 0, len(DATA)) == DATA
        finally:
            await source.close()


async def test_a_space_in_the_url_is_percent_encoded() -> None:
    async with RangeServer({"my model.bin": DATA}) as server:
        source = HttpSource(server.url("my model.bin"))
        try:
            assert [entry.path for entry in await source.list_files()] == ["my model.bin"]
            assert await read_all(source, "my model.bin", 0, len(DATA)) == DATA
        finally:
            await source.close()


@pytest.mark.parametrize(
    ("path", "error"),
    [("m", r"a directory \(redirected to .*/m/\); end the URL with '/'"), ("listing", "HTML page")],
)
async def test_a_directory_url_without_its_slash_is_refused(path: str, error: str) -> None:
    """``https://host/dir`` answers with a redirect to ``dir/`` or an HTML listing: never a
    file to install (with a marker) under the name ``dir``."""
    async with RangeServer({"w.bin": DATA}) as server:
        source = HttpSource(f"http://127.0.0.1:{server.port}/{path}")
        try:
            with pytest.raises(SourceError, match=error):
                await source.list_files()
        finally:
            await source.close()
