"""``https://`` and ``http://`` sources: one file, or a directory described by a manifest.

A URL ending in ``/`` or naming ``tiergate-manifest.json`` is a directory: its manifest
(``{"version": 1, "files": [{"path", "size", "sha256"}]}``, as ``tiergate fetch
--write-manifest`` writes it) lists the files, fetched relative to the directory. Any other URL
is a single file, sized by ``HEAD``; its sha256 is known when the server's ``X-Linked-Etag`` or
``ETag`` is one (the Hugging Face LFS convention), and the URL is used as given (query included:
pre-signed URLs work).

The listing (``HEAD``, the manifest) uses aiohttp; reads are blocking ranged ``GET`` s in the
transfer's threads (:mod:`.ranged`). Statuses become fetcher errors in one place,
:func:`.ranged.status_error`: 408, 429 and 5xx (with ``Retry-After``), resets and timeouts are
retryable; 401, 403, 404 and other client errors are not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from posixpath import basename
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

import aiohttp

from tiergate.modelcache.errors import RetryableError, SourceError
from tiergate.modelcache.manifest import MANIFEST_NAME, parse_manifest
from tiergate.modelcache.plan import FileEntry
from tiergate.modelcache.sources.ranged import (
    RangeClient,
    RangeGet,
    basic_auth,
    range_total,
    redact_url,
    status_error,
)

_MANIFEST_MAX_BYTES = 64 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")


def sha256_from_etag(value: str | None) -> str | None:
    """The sha256 an ETag carries (``"<64 hex>"``, maybe weak), else ``None``."""
    if value is None:
        return None
    tag = value.strip().removeprefix("W/").strip('"').lower()
    return tag if _SHA256.fullmatch(tag) else None


def _raise_for_status(response: aiohttp.ClientResponse, what: str) -> None:
    if response.status >= 300:
        raise status_error(response.status, response.headers, None, what)


class HttpSource:
    """Files over HTTP(S) with ranged ``GET`` s; see the module docstring for URLs.

    ``session`` is used as given (and left open by :meth:`close`); without one the source makes
    its own (proxy settings from the environment) and closes it; reads use their own
    connections. ``headers`` go with every request (an ``Authorization``, say).
    ``request_timeout_s`` bounds connecting, each wait for a read's headers, and the whole of
    ``HEAD`` and manifest requests (the transfer's stall limit bounds each wait for body bytes)."""

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession | None = None,
        headers: Mapping[str, str] | None = None,
        request_timeout_s: float = 30.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SourceError(f"not an http(s) URL: {redact_url(url)}")
        # User info becomes a Basic Authorization header (dropped on redirects elsewhere); a
        # path is percent-encoded where it needs it (a space), as a browser would.
        auth = {}
        if parts.username:
            auth["Authorization"] = basic_auth(parts.username, parts.password)
        netloc = parts.netloc.rpartition("@")[2]
        path = quote(parts.path, safe=_PATH_SAFE)
        url = urlunsplit((parts.scheme, netloc, path, parts.query, ""))
        self.url = redact_url(url)
        self._session = session
        self._own_session = session is None
        self._headers = auth | dict(headers or {})
        self._whole_timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self._ranges = RangeClient(request_timeout_s)
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

    async def reader(self, path: str) -> RangeGet:
        """Ranged GETs of ``path`` (a :class:`~tiergate.modelcache.sources.ranged.RangeReader`)."""
        url = self._url_of(path)
        what = f"GET {redact_url(url)}"
        return RangeGet(self._ranges, url, what, headers=self._headers, size=self._sizes.get(path))

    async def close(self) -> None:
        self._ranges.close()
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
        entry = await self._probe("HEAD", name, url)
        if entry is None:
            # Refused: a pre-signed URL (S3, GCS) is signed for GET only. Ask for byte 0.
            entry = await self._probe("GET", name, url)
        assert entry is not None
        return entry

    async def _probe(self, method: str, name: str, url: str) -> FileEntry | None:
        """A single file's size, sha256 (from ETag-like headers, redirects' included: the Hub
        sends the LFS sha256 on the redirect, not on the CDN's answer) and version (its
        ETag), by ``HEAD`` or by a ``GET`` of its first byte; ``None`` when a ``HEAD`` is
        refused with 403 or 405."""
        what = f"{method} {redact_url(url)}"
        extra = {"Range": "bytes=0-0"} if method == "GET" else {}
        try:
            async with self._client().request(
                method,
                url,
                headers={**self._headers, "Accept-Encoding": "identity", **extra},
                allow_redirects=True,
                timeout=self._whole_timeout,
            ) as response:
                if method == "HEAD" and response.status in (403, 405):
                    return None
                _refuse_directory(response, url, what)
                _raise_for_status(response, what)
                _refuse_html(response, what)
                size = _size_of(response)
                if size is None:
                    raise SourceError(f"{what}: no Content-Length")
                tags = [r.headers.get(h) for r in (*response.history, response) for h in _TAGS]
                sha256 = next((s for s in map(sha256_from_etag, tags) if s), None)
                return FileEntry(name, size, sha256, version=response.headers.get("ETag"))
        except (aiohttp.ClientSSLError, aiohttp.InvalidURL) as exc:
            raise SourceError(f"{what}: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RetryableError(f"{what}: {type(exc).__name__}: {exc}") from exc

    async def _read_manifest(self) -> list[FileEntry]:
        assert self._base is not None
        url = self._base + MANIFEST_NAME
        what = f"GET {redact_url(url)}"
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
        return parse_manifest(body, redact_url(url))


_TAGS = ("X-Linked-Etag", "ETag")
_PATH_SAFE = "/%:@!$&'()*+,;=~"


def _size_of(response: aiohttp.ClientResponse) -> int | None:
    """The file's size: a 206's Content-Range total, else the Content-Length."""
    if response.status == 206:
        return range_total(response.headers.get("Content-Range"))
    return response.content_length


def _refuse_directory(response: aiohttp.ClientResponse, url: str, what: str) -> None:
    """A URL without its trailing ``/`` that names a directory is redirected to ``…/`` (and
    then answered with a listing, or refused): never a model file."""
    final = str(response.url)
    if final.split("?", 1)[0].endswith("/") and not url.split("?", 1)[0].endswith("/"):
        raise SourceError(
            f"{what}: a directory (redirected to {redact_url(final)}); end the URL with '/' "
            f"and publish a {MANIFEST_NAME} there"
        )


def _refuse_html(response: aiohttp.ClientResponse, what: str) -> None:
    """An HTML page (a directory listing, a login form) is never a model file."""
    if response.content_type == "text/html":
        raise SourceError(
            f"{what}: the server answers with an HTML page, not a file (a directory listing? "
            f"end the URL with '/' and publish a {MANIFEST_NAME} there)"
        )
