"""``fetch`` from S3 (moto's server) and from the Hub (the fake Hub and its CDN) into a DEST:
the plan, the transfer, verification against the sources' own sha256, the marker, and the
fast path on the next run. The sources' ``.safetensors`` fixtures are random bytes, which the
safetensors check refuses (tested once here); the other fetches leave them out."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.modelcache_sources.fake_hub import MODEL_FILES, FakeCdn, FakeHub
from tests.modelcache_sources.test_s3 import _client, aws_env, bucket, moto_endpoint  # noqa: F401
from tiergate.modelcache.cache import read_marker
from tiergate.modelcache.errors import SourceError, VerifyError
from tiergate.modelcache.fetch import fetch
from tiergate.modelcache.sources.hf import HfSource
from tiergate.modelcache.sources.s3 import S3Source


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` but tiergate's own, by relative path."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in root.rglob("*")
        if path.is_file() and not path.relative_to(root).as_posix().startswith(".tiergate")
    }


async def test_fetch_from_s3_verifies_installs_and_marks_then_takes_the_fast_path(
    moto_endpoint: str,  # noqa: F811
    bucket: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    dest = tmp_path / "dest"
    client = _client(moto_endpoint)
    listed = client.list_objects_v2(Bucket=bucket, Prefix="llama/")["Contents"]
    expected = {
        item["Key"].removeprefix("llama/"): client.get_object(Bucket=bucket, Key=item["Key"])[
            "Body"
        ].read()
        for item in listed
        if not item["Key"].endswith("/")
        and "/.tiergate" not in item["Key"]
        and not item["Key"].endswith(".safetensors")
    }
    client.close()

    source = S3Source(f"s3://{bucket}/llama", endpoint_url=moto_endpoint)
    try:
        with pytest.raises(VerifyError, match="safetensors"):
            await fetch(source, tmp_path / "refused")
        assert read_marker(tmp_path / "refused") is None
        first = await fetch(source, dest, exclude=["*.safetensors"])
        again = await fetch(source, dest, exclude=["*.safetensors"])
    finally:
        await source.close()

    assert first.status == "fetched"
    assert tree(dest) == expected
    assert first.files_verified == len(expected)
    marker = read_marker(dest)
    assert marker is not None
    assert marker.digest == first.digest
    assert again.status == "cached"
    assert again.bytes_transferred == 0


async def test_a_key_that_lists_outside_dest_is_refused_before_dest_is_touched(
    moto_endpoint: str,  # noqa: F811
    bucket: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A stray ``//`` after the prefix (``aws s3 cp … s3://b/m//``) lists as an absolute path:
    the fetch refuses it, and the file of that name outside DEST is left alone."""
    victim = tmp_path / "victim.txt"
    victim.write_text("not the fetcher's")
    client = _client(moto_endpoint)
    client.put_object(Bucket=bucket, Key="stray/ok.json", Body=b"{}")
    client.put_object(Bucket=bucket, Key=f"stray/{victim}", Body=b"overwritten")
    client.close()
    dest = tmp_path / "dest"
    source = S3Source(f"s3://{bucket}/stray", endpoint_url=moto_endpoint)
    try:
        with pytest.raises(SourceError, match=r"unsafe file path '/.*victim\.txt' \(absolute\)"):
            await fetch(source, dest)
    finally:
        await source.close()
    assert victim.read_text() == "not the fetcher's"
    assert read_marker(dest) is None
    assert not dest.exists() or tree(dest) == {}


async def test_fetch_from_the_hub_pins_one_commit_and_checks_lfs_hashes(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    async with FakeCdn() as cdn, FakeHub(cdn) as hub:
        source = HfSource("hf://org/model", endpoint=hub.endpoint, environ={})
        try:
            # flaky.bin always answers 503 (a source test's case).
            summary = await fetch(source, dest, exclude=["flaky.bin", "*.safetensors"])
        finally:
            await source.close()

    assert summary.status == "fetched"
    kept = {p: f for p, f in MODEL_FILES.items() if p != "flaky.bin" and ".safetensors" not in p}
    assert tree(dest) == {path: item.data for path, item in kept.items()}
    marker = read_marker(dest)
    assert marker is not None
    lfs = {path for path, item in kept.items() if item.lfs}
    assert lfs
    for path in lfs:
        assert hashlib.sha256((dest / path).read_bytes()).hexdigest() in marker.model_dump_json()
