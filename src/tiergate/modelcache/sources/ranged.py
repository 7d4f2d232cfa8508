"""Blocking ranged ``GET`` s into a reused buffer: the data path of every HTTP-like source.

The transfer runs each chunk's read in a worker thread of its own pool. There, a read is a
loop of ``recv_into`` a 1 MiB buffer and a call of the caller's ``write`` with a view of what
arrived: no bytes object is made per piece, and the GIL is let go in every system call, so
the connections spread over the machine's cores. (An asyncio client parses every connection's
bytes in the one event-loop thread: on a 2-core machine that thread, not the network, bounded
a fetch at about 500 MB/s.)

Connections are :mod:`http.client` ones, kept alive per thread and host. Proxies come from the
environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``), certificates from the system's
store (``SSL_CERT_FILE`` honoured). Redirects are followed, and an ``Authorization`` header is
dropped when one leaves its origin (the Hub redirects to a CDN with a signed URL).

Errors name the request's ``what``, never its URL (a presigned URL carries a signature):
resets, timeouts, short or long bodies and 408/429/5xx are :class:`RetryableError` (with the
server's ``Retry-After``), the rest :class:`SourceError`.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import http.client
import re
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from multidict import CIMultiDict

from tiergate.modelcache.errors import FetchError, LongReadError, RetryableError, SourceError

BUFFER_BYTES = 1 << 20  # one recv_into at most this much; one write per piece
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_ERROR_BODY_BYTES = 4096
_ERROR_CODE = re.compile(rb"<Code>([A-Za-z0-9.]{1,64})</Code>")  # S3 and compatible stores
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")

Write = Callable[[memoryview], None]


class RangeReader(Protocol):
    """One file of a source, read in a worker thread: ``read_into`` calls ``write`` with the
    bytes ``[start, end)`` in order, in pieces of any size (each view is valid only during its
    call), waits at most ``stall_s`` for any byte, and raises fetcher errors, never retrying."""

    def read_into(self, start: int, end: int, write: Write, stall_s: float) -> None: ...


class StatusError(Protocol):
    """The error for a refused request: status, response headers, the error code its body
    named (S3's ``<Code>``) and ``what`` the request was."""

    def __call__(
        self, status: int, headers: Mapping[str, str], code: str | None, what: str
    ) -> FetchError: ...


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


_RATELIMIT_RESET = re.compile(r";\s*t\s*=\s*(\d+)")


def retry_after_s(headers: Mapping[str, str], now: float) -> float | None:
    """The wait a server asked for: ``Retry-After`` in seconds or as an HTTP date, else the
    reset time of an IETF ``RateLimit`` header (the Hub sends one with its 429s)."""
    if headers.get("Retry-After", "").strip():
        return parse_retry_after(headers["Retry-After"], now)
    match = _RATELIMIT_RESET.search(headers.get("RateLimit", ""))
    return float(match.group(1)) if match else None


def retryable_status(status: int, headers: Mapping[str, str], message: str) -> FetchError | None:
    """The one rule for retrying a refusal: 408, 429 and 5xx are retryable, after the wait
    the server asked for; ``None`` for every other status (final; the source words it)."""
    if status in (408, 429) or status >= 500:
        return RetryableError(message, retry_after_s=retry_after_s(headers, time.time()))
    return None


def basic_auth(username: str, password: str | None) -> str:
    """The ``Basic`` credentials of a URL's user info (percent-encoded, as URLs carry it)."""
    user = f"{unquote(username)}:{unquote(password or '')}"
    return "Basic " + base64.b64encode(user.encode()).decode()


def redact_url(url: str) -> str:
    """``url`` fit for messages, summaries and markers: no user info, and a query (a pre-signed
    URL's signature) shown only as ``?…``."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", "")) + ("?…" if parts.query else "")


def status_error(
    status: int,
    headers: Mapping[str, str],
    code: str | None,
    what: str,
    explain: Mapping[int, str] | None = None,
) -> FetchError:
    """The error for an error status: retryable as :func:`retryable_status` says, the rest
    final; ``explain`` words statuses in the source's terms (404: "not found")."""
    message = f"{what}: HTTP {status}{' ' + code if code else ''}"
    if explain and status in explain:
        message = f"{what}: {explain[status]} ({code + ', ' if code else ''}HTTP {status})"
    return retryable_status(status, headers, message) or SourceError(message)


def range_total(content_range: str | None) -> int | None:
    """The whole file's size a ``Content-Range: bytes a-b/total`` names (``None``: no header,
    another form, or ``*``)."""
    match = _CONTENT_RANGE.fullmatch((content_range or "").strip())
    return int(match[3]) if match and match[3] != "*" else None


def check_range(
    status: int, headers: Mapping[str, str], start: int, end: int, *, size: int | None, what: str
) -> None:
    """A 2xx answer to ``Range: bytes=start-(end-1)`` must carry exactly that range. A 206 says
    so in Content-Range; some S3-compatible stores (gofakes3, so ``rclone serve s3``) send the
    same header with a 200. A 200 without it answers only a range that is the whole file.
    ``headers`` must look names up without regard to case (:class:`CIMultiDict`)."""
    content_range = headers.get("Content-Range")
    if status == 206 or content_range is not None:
        match = _CONTENT_RANGE.fullmatch((content_range or "").strip())
        if match is None or (int(match[1]), int(match[2]) + 1) != (start, end):
            raise RetryableError(f"{what}: answered with Content-Range {content_range!r}")
        if size is not None and match[3] != "*" and int(match[3]) != size:
            # Replaced since it was listed: its ranges would mix two versions.
            raise SourceError(
                f"{what}: the file is now {match[3]} bytes, listed as {size}: it changed "
                "during the fetch; fetch again to take the new version"
            )
        return
    length = headers.get("Content-Length")
    whole = int(length) if length and length.isdigit() else size
    if status == 200 and start == 0 and whole == end:
        return
    # Retryable: a cache or proxy on the way may do this now and then; retries are bounded.
    raise RetryableError(
        f"{what}: the server ignored the Range header (HTTP {status} without Content-Range)"
    )


@dataclass(frozen=True)
class _Origin:
    scheme: str
    host: str
    port: int


@dataclass(eq=False)
class _Link:
    """A kept-alive connection; ``forward`` holds the headers of a plain-HTTP proxy, which is
    sent whole URLs (``None``: direct, or a CONNECT tunnel)."""

    conn: http.client.HTTPConnection
    forward: dict[str, str] | None = None


class RangeClient:
    """Keep-alive connections, one set per thread; :meth:`close` from any thread shuts every
    socket, which also ends a read blocked in ``recv``.

    ``timeout_s`` bounds connecting and each wait for a response's headers; a body's bytes
    are waited for ``stall_s`` (given per read)."""

    def __init__(self, timeout_s: float = 30.0, ssl_context: ssl.SSLContext | None = None) -> None:
        self._timeout_s = timeout_s
        self._ssl = ssl_context or ssl.create_default_context()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[_Link] = set()

    def get(self, request: RangeGet, start: int, end: int, write: Write, stall_s: float) -> None:
        """Bytes ``[start, end)`` of ``request``'s URL into ``write`` (see :class:`RangeReader`)."""
        if not 0 <= start <= end:
            raise ValueError(f"bad range [{start}, {end}) of {request.what}")
        if start == end:
            return
        what = request.what
        url, headers = request.url, dict(request.headers)
        headers |= {"Range": f"bytes={start}-{end - 1}", "Accept-Encoding": "identity"}
        for _ in range(MAX_REDIRECTS + 1):
            link, sock, response = self._send(url, headers, what)
            done = False
            try:
                if response.status in _REDIRECTS:
                    location = response.getheader("Location")
                    if not location:
                        raise SourceError(f"{what}: redirect {response.status} without Location")
                    following = urljoin(url, location)
                    if _origin(following) != _origin(url):
                        headers.pop("Authorization", None)
                    url = following
                    continue
                answer = CIMultiDict(response.getheaders())
                if response.status >= 300:
                    raise self._refusal(response, answer, request)
                check_range(response.status, answer, start, end, size=request.size, what=what)
                sock.settimeout(stall_s)
                self._body(response, end - start, write, stall_s, what)
                done = True
                return
            finally:
                if not done or response.will_close:
                    self._drop(link)
        raise SourceError(f"{what}: more than {MAX_REDIRECTS} redirects")

    def close(self) -> None:
        """Shut every connection (any thread's); reads under way fail, later ones reconnect."""
        with self._lock:
            links, self._open = self._open, set()
        for link in links:
            _shut(link.conn)

    # -- one request ----------------------------------------------------------------------

    def _send(
        self, url: str, headers: dict[str, str], what: str
    ) -> tuple[_Link, socket.socket, http.client.HTTPResponse]:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SourceError(f"{what}: not an http(s) URL")
        origin = _origin(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        for attempt in (1, 2):  # a kept-alive connection the server closed meanwhile: once more
            reused, link = self._link(origin)
            conn = link.conn
            try:
                if conn.sock is None:
                    conn.connect()
                assert conn.sock is not None
                sock: socket.socket = conn.sock
                sock.settimeout(self._timeout_s)
                if link.forward is None:
                    conn.request("GET", target, headers=headers)
                else:
                    conn.request("GET", url, headers=headers | link.forward)
                return link, sock, conn.getresponse()
            except ssl.SSLCertVerificationError as exc:
                self._drop(link)
                raise SourceError(
                    f"{what}: TLS certificate not trusted: {exc.verify_message}"
                ) from exc
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self._drop(link)
                if reused and attempt == 1:
                    continue
                raise RetryableError(f"{what}: {type(exc).__name__}: {exc}") from exc
            except TimeoutError as exc:
                self._drop(link)
                raise RetryableError(f"{what}: no answer in {self._timeout_s:g} s") from exc
            except (OSError, http.client.HTTPException) as exc:
                self._drop(link)
                raise RetryableError(f"{what}: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")

    def _body(
        self,
        response: http.client.HTTPResponse,
        length: int,
        write: Write,
        stall_s: float,
        what: str,
    ) -> None:
        declared = response.length  # None when chunked
        if declared is not None and declared != length:
            raise RetryableError(f"{what}: {declared} bytes announced for a {length}-byte range")
        buffer = self._buffer()
        remaining = length
        while remaining:
            view = buffer[: min(len(buffer), remaining)]
            try:
                got = response.readinto(view)
            except TimeoutError as exc:
                raise RetryableError(f"stalled: no bytes for {stall_s:g} s") from exc
            except (OSError, http.client.HTTPException) as exc:
                raise RetryableError(
                    f"{what}: connection lost {remaining} bytes short: {type(exc).__name__}"
                ) from exc
            if not got:
                raise RetryableError(f"{what}: connection ended {remaining} bytes short")
            remaining -= got
            write(view[:got])
        if declared is None and response.read(1):  # chunked: the body must end here
            raise LongReadError(f"{what}: long read: more bytes than the range asked for")

    def _refusal(
        self, response: http.client.HTTPResponse, headers: Mapping[str, str], request: RangeGet
    ) -> FetchError:
        try:
            body = response.read(_ERROR_BODY_BYTES)
        except (OSError, http.client.HTTPException):
            body = b""
        found = _ERROR_CODE.search(body)
        code = found[1].decode("ascii") if found else None
        if request.status_error is not None:
            return request.status_error(response.status, headers, code, request.what)
        return status_error(response.status, headers, code, request.what, request.explain)

    # -- connections ----------------------------------------------------------------------

    def _buffer(self) -> memoryview:
        buffer: memoryview | None = getattr(self._local, "buffer", None)
        if buffer is None:
            buffer = self._local.buffer = memoryview(bytearray(BUFFER_BYTES))
        return buffer

    def _link(self, origin: _Origin) -> tuple[bool, _Link]:
        """This thread's connection to ``origin`` (``True``: kept alive from an earlier read)."""
        links: dict[_Origin, _Link] | None = getattr(self._local, "links", None)
        if links is None:
            links = self._local.links = {}
        link = links.get(origin)
        with self._lock:
            if link is not None and link in self._open:
                return True, link
            link = links[origin] = _new_link(origin, self._timeout_s, self._ssl)
            self._open.add(link)
        return False, link

    def _drop(self, link: _Link) -> None:
        with self._lock:
            self._open.discard(link)
        link.conn.close()


@dataclass(frozen=True)
class RangeGet:
    """One object behind a URL, read by :class:`RangeClient` ranged GETs: a :class:`RangeReader`.

    ``what`` names it in errors; ``size``, when known, lets a 200 answer a whole-file range;
    ``status_error`` (or the default with ``explain``) turns refusals into errors."""

    client: RangeClient
    url: str
    what: str
    headers: Mapping[str, str] = field(default_factory=dict)
    size: int | None = None
    explain: Mapping[int, str] | None = None
    status_error: StatusError | None = None

    def read_into(self, start: int, end: int, write: Write, stall_s: float) -> None:
        self.client.get(self, start, end, write, stall_s)


def _origin(url: str) -> _Origin:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return _Origin(parts.scheme, parts.hostname or "", port)


def _new_link(origin: _Origin, timeout_s: float, context: ssl.SSLContext) -> _Link:
    """An unconnected connection to ``origin``, through the environment's proxy for it if any:
    a CONNECT tunnel for HTTPS, whole URLs for plain HTTP."""
    proxy = _proxy_for(origin)
    if proxy is None:
        if origin.scheme == "https":
            return _Link(
                http.client.HTTPSConnection(
                    origin.host, origin.port, timeout=timeout_s, context=context
                )
            )
        return _Link(http.client.HTTPConnection(origin.host, origin.port, timeout=timeout_s))
    parts = urlsplit(proxy)
    if parts.scheme == "https":
        # http.client speaks plain TCP to a proxy: credentials would travel in clear text.
        raise SourceError(
            f"proxy {redact_url(proxy)}: TLS to the proxy itself is not supported; give it as "
            "http://host:port (HTTPS to the server still goes through a CONNECT tunnel)"
        )
    auth: dict[str, str] = {}
    if parts.username:
        auth["Proxy-Authorization"] = basic_auth(parts.username, parts.password)
    host, port = parts.hostname or "", parts.port or 80
    if origin.scheme == "https":
        tunnel = http.client.HTTPSConnection(host, port, timeout=timeout_s, context=context)
        tunnel.set_tunnel(origin.host, origin.port, headers=auth)
        return _Link(tunnel)
    return _Link(http.client.HTTPConnection(host, port, timeout=timeout_s), forward=auth)


def _proxy_for(origin: _Origin) -> str | None:
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(origin.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(f"{origin.host}:{origin.port}"):
        return None
    return proxy if "://" in proxy else "http://" + proxy


def _shut(conn: http.client.HTTPConnection) -> None:
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    conn.close()


def read_bytes(reader: RangeReader, start: int, end: int, stall_s: float = 30.0) -> bytes:
    """Bytes ``[start, end)`` of ``reader`` in one bytes object (blocking): for small objects
    such as manifests, and for tests."""
    data = bytearray()
    reader.read_into(start, end, data.extend, stall_s)
    return bytes(data)
