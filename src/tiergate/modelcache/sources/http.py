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
from urllib.parse import quote, unquote, urljoin, urlsplit

import aiohttp

from tiergate.modelcache.errors import RetryableError, SourceError
from tiergate.modelcache.manifest import MANIFEST_NAME, parse_manifest
from tiergate.modelcache.plan import FileEntry
from tiergate.modelcache.sources.ranged import RangeClient, RangeGet, status_error

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
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SourceError(f"not an http(s) URL: {url}")
        self.url = url
        self._session = session
        self._own_session = session is None
        self._headers = dict(headers or {})
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
        return RangeGet(
            self._ranges, url, f"GET {url}", headers=self._headers, size=self._sizes.get(path)
        )

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
