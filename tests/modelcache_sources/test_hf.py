"""The ``hf://`` source against a local Hub (huggingface_hub pointed at it with ``endpoint``) and
a local CDN on another port."""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from huggingface_hub.errors import OfflineModeIsEnabled

from tests.modelcache_sources.fake_hub import COMMIT, MODEL_FILES, TOKEN, FakeCdn, FakeHub
from tiergate.modelcache.errors import RetryableError, SourceError
from tiergate.modelcache.plan import FileEntry
from tiergate.modelcache.sources.hf import HfSource, _hub_error, parse_hf_url
from tiergate.modelcache.sources.ranged import read_bytes, retry_after_s


@pytest.fixture
async def hub() -> AsyncIterator[FakeHub]:
    async with FakeCdn() as cdn, FakeHub(cdn) as hub:
        yield hub


def _source(hub: FakeHub, url: str = "hf://org/model", token: str | None = None) -> HfSource:
    # An explicit, empty environment: the tests never see a developer's HF_TOKEN.
    return HfSource(url, endpoint=hub.endpoint, token=token, environ={})


async def _read(source: HfSource, path: str, start: int, end: int) -> bytes:
    """Read as the transfer does: in a worker thread (the fake Hub runs on this event loop)."""
    return await asyncio.to_thread(read_bytes, await source.reader(path), start, end, 5.0)


async def test_lists_sizes_and_lfs_sha256_at_one_commit(hub: FakeHub) -> None:
    source = _source(hub)
    try:
        files = await source.list_files()
    finally:
        await source.close()

    expected = [
        FileEntry(path, len(item.data), hashlib.sha256(item.data).hexdigest() if item.lfs else None)
        for path, item in sorted(MODEL_FILES.items())
    ]
    assert [replace(entry, version=None) for entry in files] == expected
    # Each file's version is its git blob id: 40 hex digits, one per distinct content.
    assert all(re.fullmatch(r"[0-9a-f]{40}", entry.version or "") for entry in files)
    contents = {MODEL_FILES[entry.path].data: entry.version for entry in files}
    assert len(set(contents.values())) == len(contents)
    assert source.commit == COMMIT
    assert hub.api_calls == [("models/org/model", None)]


async def test_reads_ranges_of_the_pinned_commit_through_the_cdn(hub: FakeHub) -> None:
    source = _source(hub, "hf://org/model@main", token=TOKEN)
    shard = MODEL_FILES["model-00001-of-00002.safetensors"].data
    tokenizer = MODEL_FILES["sub dir/tokenizer.json"].data
    try:
        await source.list_files()
        path = "model-00001-of-00002.safetensors"
        size = len(shard)
        for start, end in [(0, size), (1, 1024 * 1024 + 5), (size - 1, size), (size // 3, size)]:
            assert await _read(source, path, start, end) == shard[start:end], (start, end)
        assert await _read(source, path, 10, 10) == b""
        assert await _read(source, "sub dir/tokenizer.json", 7, 4000) == tokenizer[7:4000]
    finally:
        await source.close()

    # Every download named the commit, never the branch, and carried the token to the Hub...
    assert {revision for _, revision, _, _ in hub.resolved} == {COMMIT}
    assert {auth for _, _, _, auth in hub.resolved} == {f"Bearer {TOKEN}"}
    # ...which the CDN, on another host:port, never saw, while it still got the Range.
    assert len(hub.cdn.requests) == 4
    assert all("Authorization" not in headers for headers in hub.cdn.requests)
    assert all(headers["Range"].startswith("bytes=") for headers in hub.cdn.requests)


async def test_a_read_before_listing_pins_the_commit_itself(hub: FakeHub) -> None:
    source = _source(hub, "hf://org/model@v1")
    try:
        assert await _read(source, "config.json", 0, 5) == MODEL_FILES["config.json"].data[:5]
    finally:
        await source.close()
    assert source.commit == COMMIT
    assert hub.resolved[0][1] == COMMIT


async def test_rate_limit_is_retryable_with_the_servers_wait(hub: FakeHub) -> None:
    source = _source(hub)
    data = MODEL_FILES["rate-limited.bin"].data
    try:
        await source.list_files()
        with pytest.raises(RetryableError, match="HTTP 429") as limited:
            await _read(source, "rate-limited.bin", 0, 100)
        assert limited.value.retry_after_s == 7.0
        assert await _read(source, "rate-limited.bin", 0, 100) == data[:100]

        with pytest.raises(RetryableError, match="HTTP 503"):
            await _read(source, "flaky.bin", 0, 10)
    finally:
        await source.close()


async def test_a_full_read_accepts_200_and_a_partial_one_refuses_it(hub: FakeHub) -> None:
    source = _source(hub)
    data = MODEL_FILES["whole.txt"].data
    try:
        await source.list_files()
        assert await _read(source, "whole.txt", 0, len(data)) == data
        with pytest.raises(RetryableError, match="ignored the Range header"):
            await _read(source, "whole.txt", 2, 5)
    finally:
        await source.close()


async def test_gated_repo_downloads_are_refused_with_advice(hub: FakeHub) -> None:
    anonymous = _source(hub, "hf://org/gated")
    with_token = _source(hub, "hf://org/gated", token=TOKEN)
    try:
        assert [entry.path for entry in await anonymous.list_files()] == ["weights.bin"]
        with pytest.raises(SourceError, match="gated repository: request access") as refused:
            await _read(anonymous, "weights.bin", 0, 10)
        assert "set HF_TOKEN" in str(refused.value)

        with pytest.raises(SourceError, match="gated repository: the token's account") as denied:
            await _read(with_token, "weights.bin", 0, 10)
        assert TOKEN not in str(denied.value)
        assert "is restricted" in str(denied.value)
    finally:
        await anonymous.close()
        await with_token.close()


async def test_private_repo_needs_the_token_from_the_environment(hub: FakeHub) -> None:
    anonymous = _source(hub, "hf://org/private")
    with pytest.raises(SourceError, match=r"repository not found \(set HF_TOKEN"):
        await anonymous.list_files()
    await anonymous.close()

    for variable in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        source = HfSource(
            "hf://org/private", environ={"HF_ENDPOINT": hub.endpoint, variable: TOKEN}
        )
        try:
            files = await source.list_files()
            assert (
                await _read(source, "weights.bin", 0, files[0].size)
                == hub.cdn.blobs[files[0].sha256 or ""]
            )
        finally:
            await source.close()
    assert hub.api_calls[-1] == ("models/org/private", f"Bearer {TOKEN}")


async def test_missing_repo_revision_and_file_are_source_errors(hub: FakeHub) -> None:
    missing_repo = _source(hub, "hf://org/absent")
    missing_revision = _source(hub, "hf://org/model@no-such-branch")
    source = _source(hub)
    try:
        with pytest.raises(SourceError, match="repository not found"):
            await missing_repo.list_files()
        with pytest.raises(SourceError, match="revision 'no-such-branch' not found"):
            await missing_revision.list_files()
        await source.list_files()
        with pytest.raises(SourceError, match=r"hf://org/model: nope\.bin: not found"):
            await _read(source, "nope.bin", 0, 1)
    finally:
        for each in (missing_repo, missing_revision, source):
            await each.close()


async def test_dataset_repositories_are_listed_and_read(hub: FakeHub) -> None:
    source = _source(hub, "hf://datasets/org/corpus")
    try:
        [entry] = await source.list_files()
        data = await _read(source, entry.path, 0, entry.size)
    finally:
        await source.close()
    assert hashlib.sha256(data).hexdigest() == entry.sha256
    assert hub.resolved[0][0] == "datasets/org/corpus"


async def test_an_unreachable_hub_is_retryable(hub: FakeHub) -> None:
    port = hub.port
    await hub.close()
    source = HfSource("hf://org/model", endpoint=f"http://127.0.0.1:{port}", environ={})
    with pytest.raises(RetryableError):
        await source.list_files()
    await source.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("hf://org/model", ("model", "org/model", None)),
        ("hf://org/model@v1.0", ("model", "org/model", "v1.0")),
        ("hf://org/model@refs%2Fpr%2F3", ("model", "org/model", "refs/pr/3")),
        ("hf://models/org/model", ("model", "org/model", None)),
        ("hf://datasets/org/corpus@main", ("dataset", "org/corpus", "main")),
    ],
)
def test_parses_hub_urls(url: str, expected: tuple[str, str, str | None]) -> None:
    assert parse_hf_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "hf://model",
        "hf://org/model@",
        "s3://org/model",
        "hf://a/b/c/d",
        "hf://org/bad name",
        "hf://org/repo--x",
        "hf://org/-repo",
        "hf://org/re..po",
    ],
)
def test_refuses_malformed_hub_urls(url: str) -> None:
    with pytest.raises(SourceError):
        parse_hf_url(url)


def test_retry_after_in_seconds_dates_and_ratelimit_headers() -> None:
    now = 1_800_000_000.0
    assert retry_after_s({"Retry-After": "12"}, now) == 12.0
    in_30_s = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_after_s({"Retry-After": in_30_s}, now) == 30.0
    assert retry_after_s({"Retry-After": in_30_s}, now + 60) == 0.0
    assert retry_after_s({"RateLimit": '"api";r=0;t=55'}, now) == 55.0
    assert retry_after_s({}, now) is None
    assert retry_after_s({"Retry-After": "soon"}, now) is None


def test_offline_mode_names_both_variables_and_the_way_out() -> None:
    error = _hub_error(OfflineModeIsEnabled("offline"), "hf://org/model", None, token=False)
    assert isinstance(error, SourceError)
    assert "HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE" in str(error)
    assert "--trust-marker" in str(error)
