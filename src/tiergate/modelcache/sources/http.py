"""``https://`` and ``http://`` sources: one file, or a directory described by a manifest.

A URL ending in ``/`` or naming ``tiergate-manifest.json`` is a directory: its manifest
(``{"version": 1, "files": [{"path", "size", "sha256"}]}``, as ``tiergate fetch
--write-manifest`` writes it) lists the files, fetched relative to the directory. Any other URL
is a single file, sized by ``HEAD``; its sha256 is known when the server's ``X-Linked-Etag`` or
``ETag`` is one (the Hugging Face LFS convention), and the URL is used as given (query included:
pre-signed URLs work).

Reads are ranged ``GET`` s. HTTP statuses and aiohttp errors become fetcher errors in one place,
:func:`_raise_for_status` and :meth:`HttpSource.read`: 408, 429 and 5xx (with ``Retry-After``),
resets and timeouts are retryable; 401, 403, 404 and other client errors are not.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import AsyncIterator, Mapping
from posixpath import basename
from urllib.parse import quote, unquote, urljoin, urlsplit

import aiohttp

from tiergate.modelcache.errors import RetryableError, SourceError
from tiergate.modelcache.manifest import MANIFEST_NAME, parse_manifest
from tiergate.modelcache.plan import FileEntry

_MANIFEST_MAX_BYTES = 64 << 20
PIECE_BYTES = 256 << 10  # the most a read yields at once
_READ_BUFFER_BYTES = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds or an HTTP date, relative
    to ``now`` in Unix seconds); ``None`` when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def sha256_from_etag(value: str | None) -> str | None:
    """The sha256 an ETag carries (``"<64 hex>"``, maybe weak), else ``None``."""
    if value is None:
        return None
    tag = value.strip().removeprefix("W/").strip('"').lower()
    return tag if _SHA256.fullmatch(tag) else None


def _raise_for_status(
    response: aiohttp.ClientResponse,
    what: str,
    explain: Mapping[int, str] | None = None,
    code: str | None = None,
) -> None:
    """Raise for an error status; ``code`` is the error code the body named (S3's ``<Code>``)."""
    status = response.status
    if status < 300:
        return
    message = f"{what}: HTTP {status} {code or response.reason or ''}".rstrip()
    if explain and status in explain:
        message = f"{what}: {explain[status]} ({code + ', ' if code else ''}HTTP {status})"
    if status in (408, 429) or status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())
        raise RetryableError(message, retry_after_s=retry_after)
    raise SourceError(message)


async def read_range(
    session: aiohttp.ClientSession,
    url: str,
    start: int,
    end: int,
    *,
    what: str,
    headers: Mapping[str, str],
    limits: aiohttp.ClientTimeout,
    size: int | None = None,
    explain: Mapping[int, str] | None = None,
) -> AsyncIterator[bytes]:
    """Bytes ``[start, end)`` of the object at ``url`` as they arrive (a ranged ``GET``).

    Errors name ``what``, never ``url`` (a presigned URL carries a signature). A 206 must carry
    the matching Content-Range; a 200 answers only a range that is the whole object (``size``).
    ``explain`` words error statuses in the source's terms (404: "not found").
    """
    if end <= start:
        return
    asked = {**headers, "Range": f"bytes={start}-{end - 1}", "Accept-Encoding": "identity"}
    try:
        async with session.get(
            url,
            headers=asked,
            timeout=limits,
            read_bufsize=_READ_BUFFER_BYTES,
            auto_decompress=False,
        ) as response:
            if response.status >= 300:
                found = _ERROR_CODE.search(await response.content.read(_ERROR_BODY_BYTES))
                code = found[1].decode("ascii") if found else None
                _raise_for_status(response, what, explain, code)
            _check_range(response, start, end, size, what)
            async for piece in response.content.iter_chunked(PIECE_BYTES):
                yield piece
    except (aiohttp.ClientSSLError, aiohttp.InvalidURL) as exc:
        raise SourceError(f"{what}: {type(exc).__name__}") from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise RetryableError(f"{what}: {type(exc).__name__}: {_without_url(exc)}") from exc


_ERROR_CODE = re.compile(rb"<Code>([A-Za-z0-9.]{1,64})</Code>")  # S3 and compatible stores
_ERROR_BODY_BYTES = 4096


def _without_url(exc: BaseException) -> str:
    """An aiohttp error's text without the request URL some of them quote."""
    text = str(exc)
    request = getattr(exc, "request_info", None)
    if request is not None:
        text = text.replace(str(request.real_url), "<url>")
    return text


def _check_range(
    response: aiohttp.ClientResponse, start: int, end: int, size: int | None, what: str
) -> None:
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if match is None or (int(match[1]), int(match[2]) + 1) != (start, end):
            got = response.headers.get("Content-Range")
            raise RetryableError(f"{what}: answered with Content-Range {got!r}")
        return
    # A whole-file 200 answers a range only when the range is the whole file.
    if response.status == 200 and start == 0 and (response.content_length or size) == end:
        return
    raise RetryableError(
        f"{what}: HTTP {response.status} without the range (the server ignored Range)"
    )


class HttpSource:
    """Files over HTTP(S) with ranged ``GET`` s; see the module docstring for URLs.

    ``session`` is used as given (and left open by :meth:`close`); without one the source makes
    its own (proxy settings from the environment) and closes it. ``headers`` go with every
    request (an ``Authorization``, say). ``request_timeout_s`` bounds connecting, each wait for
    body bytes, and the whole of ``HEAD`` and manifest requests."""

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession | None = None,
        headers: Mapping[str, str] | None = None,
        request_timeout_s: float = 30.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SourceError(f"not an http(s) URL: {url}")
        self.url = url
        self._session = session
        self._own_session = session is None
        self._headers = dict(headers or {})
        self._whole_timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self._read_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=request_timeout_s, sock_read=request_timeout_s
        )
        name = basename(parts.path)
        if not name or name == MANIFEST_NAME:
            self._base: str | None = urljoin(url, "./")
            self._single: tuple[str, str] | None = None
        else:
            self._base = None
            self._single = (unquote(name), url)
        self._sizes: dict[str, int] = {}

    async def list_files(self) -> list[FileEntry]:
        if self._single is not None:
            entries = [await self._head(*self._single)]
        else:
            entries = await self._read_manifest()
        self._sizes = {entry.path: entry.size for entry in entries}
        return entries

    async def read(self, path: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Yield bytes ``[start, end)`` of ``path`` as they arrive."""
        url = self._url_of(path)
        pieces = read_range(
            self._client(),
            url,
            start,
            end,
            what=f"GET {url} bytes {start}-{end - 1}",
            headers=self._headers,
            limits=self._read_timeout,
            size=self._sizes.get(path),
        )
        async for piece in pieces:
            yield piece

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No pool limit of its own: the transfer bounds how many reads are in flight.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0), auto_decompress=False, trust_env=True
            )
        return self._session

    def _url_of(self, path: str) -> str:
        if self._single is not None:
            if path != self._single[0]:
                raise SourceError(f"{self.url} has no file {path!r}")
            return self._single[1]
        assert self._base is not None
        return self._base + quote(path)

    async def _head(self, name: str, url: str) -> FileEntry:
        what = f"HEAD {url}"
        try:
            async with self._client().head(
                url,
                headers={**self._headers, "Accept-Encoding": "identity"},
                allow_redirects=True,
                timeout=self._whole_timeout,
            ) as response:
                _raise_for_status(response, what)
                if response.content_length is None:
                    raise SourceError(f"{what}: no Content-Length")
                # The Hub sends the LFS sha256 on the redirect, not on the CDN's answer.
                tags = [r.headers.get(h) for r in (*response.history, response) for h in _TAGS]
                sha256 = next((s for s in map(sha256_from_etag, tags) if s), None)
                return FileEntry(name, response.content_length, sha256)
        except (aiohttp.ClientSSLError, aiohttp.InvalidURL) as exc:
            raise SourceError(f"{what}: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RetryableError(f"{what}: {type(exc).__name__}: {exc}") from exc

    async def _read_manifest(self) -> list[FileEntry]:
        assert self._base is not None
        url = self._base + MANIFEST_NAME
        what = f"GET {url}"
        try:
            async with self._client().get(
                url, headers=self._headers, timeout=self._whole_timeout
            ) as response:
                _raise_for_status(response, what)
                if (response.content_length or 0) > _MANIFEST_MAX_BYTES:
                    raise SourceError(f"{what}: manifest larger than {_MANIFEST_MAX_BYTES} bytes")
                body = await response.read()
        except (aiohttp.ClientSSLError, aiohttp.InvalidURL) as exc:
            raise SourceError(f"{what}: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RetryableError(f"{what}: {type(exc).__name__}: {exc}") from exc
        return parse_manifest(body, url)


_TAGS = ("X-Linked-Etag", "ETag")
