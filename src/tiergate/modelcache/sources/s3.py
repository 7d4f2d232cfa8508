"""``s3://bucket/prefix``: the objects under a prefix, read with ranged GETs.

Listing and checksums go through botocore's client; reads are presigned GETs (SigV4 in the
query, signed locally by botocore) read in the transfer's threads, the path ``https://``
sources take (:mod:`.ranged`). The
client is botocore's (the engine under boto3), so credentials come from the standard chain
(environment, shared files and ``AWS_PROFILE``, web identity / IRSA, container and instance
metadata); the endpoint and region come from the arguments, else ``AWS_ENDPOINT_URL_S3`` /
``AWS_ENDPOINT_URL`` and ``AWS_REGION``. botocore's own retries are off (the transfer engine
retries), and so is its response checksum validation: ranged GETs carry no whole-object
checksum, and every file is hashed after the transfer anyway.

Expected sha256, per object: its full-object ``SHA256`` checksum when it was uploaded with one
(a multipart upload's composite ``…-N`` checksum does not hash the file and is ignored); else
its entry in a ``tiergate-manifest.json`` at the prefix; else none. Credentials never appear in
a message.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar, cast
from urllib.parse import urlsplit

from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    CredentialRetrievalError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
)
from botocore.paginate import Paginator
from botocore.session import Session
from multidict import CIMultiDict

from tiergate.modelcache.errors import FetchError, RetryableError, SourceError
from tiergate.modelcache.manifest import (
    INTERNAL_PREFIX,
    MANIFEST_NAME,
    parse_manifest,
    with_manifest,
)
from tiergate.modelcache.plan import FileEntry
from tiergate.modelcache.sources.ranged import (
    RangeClient,
    RangeGet,
    read_bytes,
    retry_after_s,
    retryable_status,
)

# How a presigned read's error statuses read for an operator.
_READ_STATUSES = {
    403: "access denied; check the AWS credentials and the bucket policy",
    404: "not found",
    416: "range not satisfiable (the object changed since it was listed?)",
}
# A manifest names files and hashes: anything near this size is not one.
MANIFEST_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_REGION = "us-east-1"

_T = TypeVar("_T")

# Error codes S3 (and S3-compatible stores) use for "slow down" and transient server trouble;
# some come with a 400 status, so the status alone does not tell.
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "BandwidthLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "InternalError",
        "ServiceUnavailable",
    }
)
_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NotFound", "404"})
_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AccountProblem",
        "403",
    }
)


class _S3Client(Protocol):
    """The part of botocore's (dynamically built) S3 client this source calls."""

    def head_object(self, **kwargs: Any) -> dict[str, Any]: ...

    def generate_presigned_url(
        self,
        method: str,
        Params: Mapping[str, Any],  # noqa: N803 - botocore's names
        ExpiresIn: int,  # noqa: N803
    ) -> str: ...

    def get_paginator(self, operation_name: str) -> Paginator[Any]: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class _Object:
    path: str
    size: int
    # None: the listing does not say (some S3-compatible stores); ask with a HEAD.
    checksum_algorithms: tuple[str, ...] | None
    etag: str | None  # changes when the object does: the file's version


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` as (bucket, key prefix ending in ``/``, or empty for the bucket)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise SourceError(f"{url}: not an s3://bucket/prefix URL")
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


def sha256_from_checksum(
    value: str | None, checksum_type: str | None, etag: str = ""
) -> str | None:
    """The hex sha256 of a whole object from S3's base64 ``ChecksumSHA256``, or None when the
    object has none or only a composite one (a checksum of part checksums, suffixed ``-N``).

    A multipart object (ETag ``"…-N"``) can carry a sha256 only as a composite one, whatever the
    store reports as its type: some S3-compatible stores drop the suffix and the type."""
    if not value or checksum_type == "COMPOSITE" or "-" in value:
        return None
    if checksum_type != "FULL_OBJECT" and re.search(r"-\d+\"?$", etag):
        return None
    try:
        digest = base64.b64decode(value, validate=True)
    except binascii.Error:
        return None
    return digest.hex() if len(digest) == 32 else None


class S3Source:
    """The objects under one S3 prefix; paths are relative to the prefix."""

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        max_connections: int = 32,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 60.0,
        environ: Mapping[str, str] | None = None,
        session: Session | None = None,
    ) -> None:
        self.url = url
        self.bucket, self.prefix = parse_s3_url(url)
        env = os.environ if environ is None else environ
        self._endpoint_url = (
            endpoint_url or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
        )
        self._region = region or env.get("AWS_REGION") or None
        self._session = session
        self._config = Config(
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            max_pool_connections=max_connections,
            retries={"total_max_attempts": 1},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # Custom endpoints (MinIO, Ceph, moto, an IP) rarely resolve bucket subdomains.
            s3={"addressing_style": "path" if self._endpoint_url else "auto"},
            user_agent_extra="tiergate-fetch",
            signature_version="s3v4",  # presigned reads: SigV2 is refused in most regions
        )
        # Blocking botocore calls (listing, HEADs, signing) run here.
        self._executor = ThreadPoolExecutor(max_connections, thread_name_prefix="tiergate-s3")
        self._client: _S3Client | None = None
        self._client_lock = asyncio.Lock()
        self._ranges = RangeClient(connect_timeout_s)
        self._read_timeout_s = read_timeout_s

    def where(self, path: str = "") -> str:
        """The ``s3://`` URL of a path under the prefix (of the prefix itself when empty)."""
        return f"s3://{self.bucket}/{self.prefix}{path}"

    async def list_files(self) -> list[FileEntry]:
        client = await self._get_client()
        objects = await self._call(partial(self._list_objects, client), self.where())
        manifest = next((item for item in objects if item.path == MANIFEST_NAME), None)
        files = [item for item in objects if _is_model_file(item.path)]
        if not files:
            raise SourceError(f"{self.where()}: no objects under this prefix")
        checksums = await self._object_checksums(client, files)
        entries = [
            FileEntry(item.path, item.size, checksums.get(item.path), version=item.etag)
            for item in files
        ]
        if manifest is None:
            return entries
        published = await self._manifest(manifest)
        return with_manifest(entries, published, self.where(MANIFEST_NAME), "objects")

    async def reader(self, path: str) -> RangeGet:
        """Ranged GETs of an object through a presigned URL (SigV4 in the query, signed in a
        worker thread by botocore): the fast path of ``https://`` sources. Errors name the
        ``s3://`` URL, never the presigned one."""
        where = self.where(path)
        client = await self._get_client()
        params = {"Bucket": self.bucket, "Key": self.prefix + path}
        url = await self._call(
            partial(client.generate_presigned_url, "get_object", Params=params, ExpiresIn=900),
            where,
        )
        return RangeGet(self._ranges, url, where, explain=_READ_STATUSES)

    async def close(self) -> None:
        self._ranges.close()
        client, self._client = self._client, None
        if client is not None:
            client.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _get_client(self) -> _S3Client:
        async with self._client_lock:
            if self._client is None:
                # Creating a client reads botocore's service models from disk.
                self._client = await self._call(self._make_client, self.where())
            return self._client

    def _make_client(self) -> _S3Client:
        session = self._session or Session()
        region = self._region or session.get_config_variable("region") or DEFAULT_REGION
        client = session.create_client(
            "s3", region_name=region, endpoint_url=self._endpoint_url, config=self._config
        )
        return cast(_S3Client, client)

    def _list_objects(self, client: _S3Client) -> list[_Object]:
        found: list[_Object] = []
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        )
        for page in pages:
            for item in page.get("Contents", ()):
                key: str = item["Key"]
                if key.endswith("/"):  # a "folder" placeholder, not a file
                    continue
                algorithms = item.get("ChecksumAlgorithm")
                found.append(
                    _Object(
                        key[len(self.prefix) :],
                        int(item["Size"]),
                        None if algorithms is None else tuple(algorithms),
                        item.get("ETag"),
                    )
                )
        return sorted(found, key=lambda item: item.path)

    async def _object_checksums(self, client: _S3Client, files: list[_Object]) -> dict[str, str]:
        """Full-object sha256 checksums, from one HEAD per object that may have one."""
        candidates = [
            item
            for item in files
            if item.checksum_algorithms is None or "SHA256" in item.checksum_algorithms
        ]
        found = await asyncio.gather(*(self._head_sha256(client, item) for item in candidates))
        return {item.path: sha for item, sha in zip(candidates, found, strict=True) if sha}

    async def _head_sha256(self, client: _S3Client, item: _Object) -> str | None:
        head = await self._call(
            partial(
                client.head_object,
                Bucket=self.bucket,
                Key=self.prefix + item.path,
                ChecksumMode="ENABLED",
            ),
            self.where(item.path),
        )
        return sha256_from_checksum(
            head.get("ChecksumSHA256"), head.get("ChecksumType"), str(head.get("ETag", ""))
        )

    async def _manifest(self, manifest: _Object) -> list[FileEntry]:
        where = self.where(MANIFEST_NAME)
        if manifest.size > MANIFEST_MAX_BYTES:
            raise SourceError(f"{where}: {manifest.size} bytes is too large for a manifest")
        reader = await self.reader(MANIFEST_NAME)
        data = await self._call(
            partial(read_bytes, reader, 0, manifest.size, self._read_timeout_s), where
        )
        return parse_manifest(data, where)

    async def _call(self, function: Callable[[], _T], where: str) -> _T:
        """Run a blocking botocore call in the source's threads, its errors translated."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, function)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, where) from exc


def _translate(exc: ClientError | BotoCoreError, where: str) -> FetchError:
    """The one place botocore's errors become the fetcher's."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = str(error.get("Message", "")) or code
        metadata = exc.response.get("ResponseMetadata", {})
        status = int(metadata.get("HTTPStatusCode", 0))
        headers = CIMultiDict[str](metadata.get("HTTPHeaders", {}))
        text = f"{where}: {status} {code}: {message}"
        retryable = retryable_status(status, headers, text)
        if retryable is not None:
            return retryable
        if code in _TRANSIENT_CODES:
            return RetryableError(text, retry_after_s(headers, time.time()))
        if code == "InvalidObjectState":
            return SourceError(f"{where}: archived (its storage class needs a restore first)")
        if status == 404 or code in _MISSING_CODES:
            return SourceError(f"{where}: not found ({code or status})")
        if status in (401, 403) or code in _DENIED_CODES:
            return SourceError(
                f"{where}: access denied ({code or status}); check the AWS credentials and the "
                "bucket policy"
            )
        return SourceError(f"{where}: {status} {code}: {message}")
    if isinstance(
        exc, ConnectionError | HTTPClientError | IncompleteReadError | CredentialRetrievalError
    ):
        return RetryableError(f"{where}: {type(exc).__name__}: {exc}")
    if isinstance(exc, NoCredentialsError):
        return SourceError(f"{where}: no AWS credentials found (environment, profile, IRSA, IMDS)")
    return SourceError(f"{where}: {type(exc).__name__}: {exc}")


def _is_model_file(path: str) -> bool:
    """A listed object that belongs to the model: not the manifest, not fetcher bookkeeping."""
    if path == MANIFEST_NAME:
        return False
    return not any(part.startswith(INTERNAL_PREFIX) for part in path.split("/"))
