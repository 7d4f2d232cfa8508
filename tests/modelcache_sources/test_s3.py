"""The ``s3://`` source against moto in server mode (a real S3 endpoint on 127.0.0.1), and
against a raw socket server for the failures moto cannot produce (503 SlowDown, a dropped body).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from email.utils import formatdate
from typing import Any

import pytest
from botocore.session import Session
from moto.server import ThreadedMotoServer

from tiergate.modelcache.errors import RetryableError, SourceError
from tiergate.modelcache.plan import FileEntry
from tiergate.modelcache.sources.ranged import BUFFER_BYTES
from tiergate.modelcache.sources.s3 import S3Source, sha256_from_checksum

SECRET = "moto-secret-key-never-shown"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Credentials from the environment only: no profile, no shared files, no IMDS."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_REGION", "us-east-1")


def _client(endpoint: str) -> Any:
    return Session().create_client("s3", region_name="us-east-1", endpoint_url=endpoint)


def _data(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


# A model under "llama/": files with a full-object SHA256, one without (CRC32 only), one
# uploaded in parts (a composite SHA256, which hashes part hashes, not the file).
SHARD_1 = _data(BUFFER_BYTES * 2 + 12345, 1)
SHARD_2 = _data(300_000, 2)
CONFIG = b'{"architectures": ["LlamaForCausalLM"]}'
TOKENIZER = _data(70_000, 3)
MULTIPART = [_data(5 * 1024 * 1024, 4), _data(1000, 5)]


def _multipart_upload(client: Any, bucket: str, key: str) -> None:
    upload = client.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256")
    parts = []
    for number, body in enumerate(MULTIPART, start=1):
        part = client.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=body,
            ChecksumAlgorithm="SHA256",
        )
        parts.append(
            {"PartNumber": number, "ETag": part["ETag"], "ChecksumSHA256": part["ChecksumSHA256"]}
        )
    client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )


@pytest.fixture
def bucket(moto_endpoint: str) -> str:
    name = f"models-{uuid.uuid4().hex[:12]}"
    client = _client(moto_endpoint)
    client.create_bucket(Bucket=name)
    sha = {"ChecksumAlgorithm": "SHA256"}
    client.put_object(Bucket=name, Key="llama/config.json", Body=CONFIG, **sha)
    client.put_object(
        Bucket=name, Key="llama/model-00001-of-00002.safetensors", Body=SHARD_1, **sha
    )
    client.put_object(Bucket=name, Key="llama/model-00002-of-00002.safetensors", Body=SHARD_2)
    client.put_object(Bucket=name, Key="llama/tokenizer/tokenizer.json", Body=TOKENIZER, **sha)
    client.put_object(Bucket=name, Key="llama/tokenizer/", Body=b"")  # a console "folder"
    client.put_object(Bucket=name, Key="llama/.tiergate/complete", Body=b"{}")
    _multipart_upload(client, name, "llama/consolidated.bin")
    # Neighbours that share the prefix's first letters but are not under it.
    client.put_object(Bucket=name, Key="llama-2/config.json", Body=b"{}")
    client.put_object(Bucket=name, Key="other.bin", Body=b"x")
    client.close()
    return name


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _read(source: S3Source, path: str, start: int, end: int) -> bytes:
    """Read as the transfer does, in a worker thread; every piece fits the reader's buffer."""
    pieces: list[bytes] = []
    reader = await source.reader(path)
    await asyncio.to_thread(
        reader.read_into, start, end, lambda piece: pieces.append(bytes(piece)), 5.0
    )
    assert all(len(piece) <= BUFFER_BYTES for piece in pieces)
    return b"".join(pieces)


@pytest.fixture
async def source(moto_endpoint: str, bucket: str) -> AsyncIterator[S3Source]:
    source = S3Source(f"s3://{bucket}/llama", endpoint_url=moto_endpoint)
    yield source
    await source.close()


async def test_lists_the_prefix_with_sizes_and_full_object_sha256(source: S3Source) -> None:
    listed = await source.list_files()
    # Each file's version is its ETag (quoted; an MD5 for a single-part upload).
    assert all(re.fullmatch(r'"[0-9a-f]{32}(-\d+)?"', entry.version or "") for entry in listed)
    files = [replace(entry, version=None) for entry in listed]

    assert files == [
        FileEntry("config.json", len(CONFIG), _sha(CONFIG)),
        # Uploaded in parts: its SHA256 is composite, so no file hash is known.
        FileEntry("consolidated.bin", sum(len(part) for part in MULTIPART), None),
        FileEntry("model-00001-of-00002.safetensors", len(SHARD_1), _sha(SHARD_1)),
        # Uploaded without a SHA256 checksum (and no manifest): no expected hash.
        FileEntry("model-00002-of-00002.safetensors", len(SHARD_2), None),
        FileEntry("tokenizer/tokenizer.json", len(TOKENIZER), _sha(TOKENIZER)),
    ]


async def test_ranged_reads_are_byte_exact(source: S3Source) -> None:
    path = "model-00001-of-00002.safetensors"
    size = len(SHARD_1)
    ranges = [(0, size), (0, 1), (1, BUFFER_BYTES + 7), (BUFFER_BYTES - 3, BUFFER_BYTES + 3)]
    ranges += [(size - 1, size), (size // 2, size)]
    for start, end in ranges:
        assert await _read(source, path, start, end) == SHARD_1[start:end], (start, end)
    assert await _read(source, path, 5, 5) == b""
    assert await _read(source, "tokenizer/tokenizer.json", 100, 200) == TOKENIZER[100:200]


async def test_concurrent_reads_of_one_file_reassemble_it(source: S3Source) -> None:
    path = "model-00001-of-00002.safetensors"
    size = len(SHARD_1)
    step = size // 7 + 1
    bounds = [(start, min(start + step, size)) for start in range(0, size, step)]
    parts = await asyncio.gather(*(_read(source, path, start, end) for start, end in bounds))
    assert b"".join(parts) == SHARD_1


async def test_missing_key_and_bucket_are_source_errors(
    source: S3Source, moto_endpoint: str, bucket: str
) -> None:
    with pytest.raises(SourceError, match=rf"s3://{bucket}/llama/nope\.bin: not found"):
        await _read(source, "nope.bin", 0, 10)

    absent = S3Source("s3://no-such-bucket-here/llama", endpoint_url=moto_endpoint)
    with pytest.raises(SourceError, match=r"s3://no-such-bucket-here/llama/: not found"):
        await absent.list_files()
    await absent.close()

    empty = S3Source(f"s3://{bucket}/nothing-here", endpoint_url=moto_endpoint)
    with pytest.raises(SourceError, match="no objects under this prefix"):
        await empty.list_files()
    await empty.close()


async def test_refused_credentials_are_a_source_error_without_the_secret(
    source: S3Source, monkeypatch: pytest.MonkeyPatch, bucket: str
) -> None:
    # moto checks signatures and keys only once its no-auth allowance is spent; with none,
    # the test key is unknown to its IAM and every request is refused.
    monkeypatch.setattr("moto.settings.INITIAL_NO_AUTH_ACTION_COUNT", 0)

    with pytest.raises(SourceError) as listing:
        await source.list_files()

    assert "access denied (InvalidAccessKeyId)" in str(listing.value)
    assert SECRET not in str(listing.value)
    assert not isinstance(listing.value, RetryableError)


async def test_a_refused_read_is_a_source_error_naming_the_object_not_the_signed_url() -> None:
    # Reads are presigned GETs. moto 5.2.5 answers those with a 500 once it enforces IAM, so the
    # refusal S3 sends (403 + an XML error code) comes from the raw server.
    server = _FaultyS3()
    server.behaviour = "denied"
    await server.start()
    source = S3Source("s3://models/llama", endpoint_url=f"http://127.0.0.1:{server.port}")
    try:
        with pytest.raises(SourceError) as reading:
            await _read(source, "config.json", 0, 4)
    finally:
        await source.close()
        await server.close()
    message = str(reading.value)
    assert message.startswith("s3://models/llama/config.json: access denied")
    assert "InvalidAccessKeyId, HTTP 403" in message
    assert not isinstance(reading.value, RetryableError)
    for secret in (SECRET, "X-Amz-Signature", "X-Amz-Credential", "127.0.0.1"):
        assert secret not in message


async def test_manifest_supplies_hashes_the_objects_lack(moto_endpoint: str, bucket: str) -> None:
    client = _client(moto_endpoint)
    weights = {"model.safetensors": _data(4000, 7), "nested/extra.bin": _data(10, 8)}
    for path, body in weights.items():
        client.put_object(Bucket=bucket, Key=f"published/{path}", Body=body)
    manifest = {
        "version": 1,
        "files": [{"path": p, "size": len(b), "sha256": _sha(b)} for p, b in weights.items()],
    }
    client.put_object(
        Bucket=bucket, Key="published/tiergate-manifest.json", Body=json.dumps(manifest)
    )
    source = S3Source(
        f"s3://{bucket}/published/",
        environ={"AWS_ENDPOINT_URL": moto_endpoint, "AWS_REGION": "eu-west-1"},
    )
    try:
        files = await source.list_files()
        unversioned = [replace(entry, version=None) for entry in files]
        assert unversioned == [FileEntry(p, len(b), _sha(b)) for p, b in sorted(weights.items())]

        # A manifest that no longer matches the objects is refused rather than trusted.
        client.put_object(Bucket=bucket, Key="published/model.safetensors", Body=b"republished")
        with pytest.raises(SourceError, match=r"tiergate-manifest\.json is stale"):
            await source.list_files()
        client.delete_object(Bucket=bucket, Key="published/model.safetensors")
        with pytest.raises(SourceError, match="names objects that are not there"):
            await source.list_files()
    finally:
        client.close()
        await source.close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_unreachable_endpoint_is_retryable() -> None:
    source = S3Source("s3://models/llama", endpoint_url=f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(RetryableError, match="s3://models/llama/"):
        await source.list_files()
    await source.close()


async def _collect(source: S3Source, path: str, end: int, into: list[bytes]) -> None:
    reader = await source.reader(path)
    await asyncio.to_thread(reader.read_into, 0, end, lambda piece: into.append(bytes(piece)), 5.0)


class _FaultyS3:
    """A raw HTTP server that answers every request one way: what moto cannot be made to do."""

    def __init__(self) -> None:
        self.behaviour = "slowdown"
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if self.behaviour == "denied":
            body = b"<Error><Code>InvalidAccessKeyId</Code><Message>No such key.</Message></Error>"
            head = f"HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {len(body)}\r\n\r\n"
            writer.write(head.encode() + body)
        elif self.behaviour == "slowdown":
            body = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
            head = f"HTTP/1.1 503 Slow Down\r\nRetry-After: 3\r\nContent-Type: application/xml\r\nContent-Length: {len(body)}\r\n\r\n"
            writer.write(head.encode() + body)
        elif self.behaviour == "timeout":
            body = b"<Error><Code>RequestTimeout</Code><Message>Idle too long.</Message></Error>"
            passed = formatdate(time.time() - 60, usegmt=True)  # a wait already over
            head = f"HTTP/1.1 408 Request Timeout\r\nRetry-After: {passed}\r\nContent-Type: application/xml\r\nContent-Length: {len(body)}\r\n\r\n"
            writer.write(head.encode() + body)
        else:  # a ranged body that stops short: the connection drops mid-transfer
            head = "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-999/1000\r\nContent-Length: 1000\r\n\r\n"
            writer.write(head.encode() + b"x" * 100)
        await writer.drain()
        writer.close()


async def test_listing_refusals_follow_the_shared_retry_rule() -> None:
    """A listing's 503 SlowDown and 408 (with Retry-After as an HTTP date) are retryable, after
    the wait the server asked for; a 403 is final."""
    server = _FaultyS3()
    await server.start()
    source = S3Source("s3://models/llama", endpoint_url=f"http://127.0.0.1:{server.port}")
    try:
        server.behaviour = "slowdown"
        with pytest.raises(RetryableError, match="503 SlowDown") as throttled:
            await source.list_files()
        assert throttled.value.retry_after_s == 3.0

        server.behaviour = "timeout"
        with pytest.raises(RetryableError, match="408 RequestTimeout") as timed_out:
            await source.list_files()
        # Read as a date (unreadable would be None) whose wait is over: retry at once.
        assert timed_out.value.retry_after_s == 0.0

        server.behaviour = "denied"
        with pytest.raises(SourceError, match="access denied"):
            await source.list_files()
    finally:
        await source.close()
        await server.close()


async def test_throttling_and_dropped_bodies_are_retryable() -> None:
    server = _FaultyS3()
    await server.start()
    source = S3Source("s3://models/llama", endpoint_url=f"http://127.0.0.1:{server.port}")
    try:
        with pytest.raises(RetryableError, match="503 SlowDown") as throttled:
            await _read(source, "model.bin", 0, 1000)
        assert throttled.value.retry_after_s == 3.0

        server.behaviour = "drop"
        received: list[bytes] = []
        with pytest.raises(RetryableError, match=r"s3://models/llama/model\.bin"):
            await _collect(source, "model.bin", 1000, received)
        assert len(b"".join(received)) <= 100
    finally:
        await source.close()
        await server.close()


_X_1000 = hashlib.sha256(b"x" * 1000)
_X_1000_B64 = base64.b64encode(_X_1000.digest()).decode()


@pytest.mark.parametrize(
    ("value", "checksum_type", "etag", "expected"),
    [
        (_X_1000_B64, None, '"398533d48111e9f664b1f64cb10c4b63"', _X_1000.hexdigest()),
        (_X_1000_B64, "FULL_OBJECT", '"398533d48111e9f664b1f64cb10c4b63-2"', _X_1000.hexdigest()),
        (f"{_X_1000_B64}-2", None, '"398533d48111e9f664b1f64cb10c4b63-2"', None),
        (_X_1000_B64, "COMPOSITE", '"398533d48111e9f664b1f64cb10c4b63"', None),
        # Multipart (ETag "…-N") but neither suffix nor type: a composite one all the same.
        (_X_1000_B64, None, '"398533d48111e9f664b1f64cb10c4b63-3"', None),
        ("AAAA", None, '"a"', None),
        ("not base64!", None, '"a"', None),
        (None, None, '"a"', None),
    ],
)
def test_only_full_object_sha256_checksums_count(
    value: str | None, checksum_type: str | None, etag: str, expected: str | None
) -> None:
    assert sha256_from_checksum(value, checksum_type, etag) == expected


@pytest.mark.parametrize("url", ["s3://", "s3:///prefix", "https://bucket/prefix", "s3://b/p?x=1"])
def test_bad_urls_are_source_errors(url: str) -> None:
    with pytest.raises(SourceError, match="not an s3://bucket/prefix URL"):
        S3Source(url)
