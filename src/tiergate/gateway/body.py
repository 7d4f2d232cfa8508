"""Reading a client's request body: bounded in decoded size and in time.

aiohttp's own decoding of ``Content-Encoding`` is switched off (see
:func:`tiergate.gateway.protocol.server_options`): it inflates a whole body before anyone can
count it, so a 1 MB gzip body could become gigabytes in memory. Here the raw payload is read in
chunks and decoded with a bounded decompressor, and every decoded byte counts against
``gateway.maxBodyBytes``, as does every byte on the wire.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Protocol

from aiohttp import web

from tiergate.gateway.openai_errors import OpenAIError

_CHUNK_BYTES = 64 * 1024

# Encodings decoded here; anything else (br, zstd, chains of encodings) is refused with 415
# rather than forwarded undecoded: no brotli or zstd decoder is installed with tiergate.
SUPPORTED_ENCODINGS = ("identity", "gzip", "deflate")


class _Decoder(Protocol):
    def feed(self, data: bytes, room: int) -> bytes: ...

    def end(self) -> None: ...


class _Identity:
    def feed(self, data: bytes, room: int) -> bytes:
        return data

    def end(self) -> None:
        return None


class _Zlib:
    """gzip or deflate (zlib-wrapped, or raw deflate as some clients send), never inflating
    more than ``room`` bytes past what the caller may keep."""

    def __init__(self, gzip: bool) -> None:
        self._gzip = gzip
        self._inflate: zlib._Decompress | None = None

    def feed(self, data: bytes, room: int) -> bytes:
        if self._inflate is None:
            self._inflate = zlib.decompressobj(self._wbits(data))
        inflate = self._inflate
        parts: list[bytes] = []
        pending = data
        while pending and room > 0:
            part = inflate.decompress(pending, room)
            parts.append(part)
            room -= len(part)
            pending = inflate.unconsumed_tail
            if inflate.eof:
                break
        if inflate.eof and (inflate.unused_data or pending):
            raise zlib.error("data after the end of the compressed stream")
        # Stopping at room <= 0 is safe: the caller then holds more than it may keep, refuses.
        return b"".join(parts)

    def end(self) -> None:
        if self._inflate is None or not self._inflate.eof:
            raise zlib.error("the compressed stream is truncated")

    def _wbits(self, first: bytes) -> int:
        if self._gzip:
            return 16 + zlib.MAX_WBITS
        # RFC 1950 header: compression method 8 and a check over the first two bytes.
        if len(first) >= 2 and first[0] & 0x0F == 8 and (first[0] << 8 | first[1]) % 31 == 0:
            return zlib.MAX_WBITS
        return -zlib.MAX_WBITS


def _decoder(header: str | None) -> _Decoder:
    encoding = (header or "identity").strip().lower()
    if encoding == "identity":
        return _Identity()
    if encoding in ("gzip", "x-gzip"):
        return _Zlib(gzip=True)
    if encoding == "deflate":
        return _Zlib(gzip=False)
    raise OpenAIError(
        415,
        f"Content-Encoding '{encoding}' is not supported; "
        f"send the body as {', '.join(SUPPORTED_ENCODINGS)}.",
        code="unsupported_content_encoding",
    )


class _Decoded:
    """The decoded body so far, refused (413) the moment raw or decoded bytes pass ``limit``."""

    def __init__(self, decoder: _Decoder, limit: int, too_large: OpenAIError) -> None:
        self._decoder = decoder
        self._limit = limit
        self._too_large = too_large
        self._parts: list[bytes] = []
        self._raw = self._size = 0

    def add(self, chunk: bytes) -> None:
        self._raw += len(chunk)
        if self._raw > self._limit:
            raise self._too_large
        part = self._decoder.feed(chunk, self._limit - self._size + 1)
        self._size += len(part)
        if self._size > self._limit:
            raise self._too_large
        self._parts.append(part)

    def end(self) -> bytes:
        self._decoder.end()
        return b"".join(self._parts)


async def read_body(request: web.Request, limit: int, timeout_s: float) -> bytes:
    """The decoded body of ``request``.

    Raises :class:`OpenAIError`: 413 past ``limit`` bytes (raw or decoded), 415 for an
    encoding not decoded here, 400 for a corrupt compressed body, 408 when the body takes more
    than ``timeout_s`` to arrive.
    """
    too_large = OpenAIError(
        413,
        f"The request body exceeds the gateway's limit of {limit} bytes.",
        code="request_too_large",
    )
    length = request.content_length
    if length is not None and length > limit:
        raise too_large
    encoding = request.headers.get("Content-Encoding")
    content = request.content
    if encoding is None and content.is_eof():
        # The common case: a plain body that came with its headers; nothing to wait for.
        data = content.read_nowait()
        if len(data) > limit:
            raise too_large
        return data
    body = _Decoded(_decoder(encoding), limit, too_large)
    try:
        if content.is_eof():  # the whole body came with the headers: no wait, so no timer
            body.add(content.read_nowait())
        else:
            async with asyncio.timeout(timeout_s):
                async for chunk in content.iter_chunked(_CHUNK_BYTES):
                    body.add(chunk)
        return body.end()
    except TimeoutError as exc:
        raise OpenAIError(
            408,
            f"The request body did not arrive within {timeout_s:g} s.",
            code="request_timeout",
        ) from exc
    except zlib.error as exc:
        raise OpenAIError(
            400, f"The request body could not be decoded: {exc}.", code="invalid_encoding"
        ) from exc
