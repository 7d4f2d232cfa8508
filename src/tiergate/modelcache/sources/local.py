"""``file:///abs/dir``: a model on a filesystem this pod mounts (EFS, FSx, NFS, a hostPath).

Expected hashes come from a ``tiergate-manifest.json`` in the directory when it has one, else
from a completion marker there (a leader's finished DEST, in leader/worker mode), else none.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from tiergate.modelcache.cache import read_marker
from tiergate.modelcache.errors import RetryableError, SourceError
from tiergate.modelcache.manifest import MANIFEST_NAME, read_manifest, walk_files, with_manifest
from tiergate.modelcache.plan import FileEntry
from tiergate.modelcache.sources.ranged import Write

CHUNK_BYTES = 4 * 1024 * 1024


def path_from_url(url: str) -> Path:
    """The absolute directory of a ``file://`` URL (``file:///abs/dir``, host empty or
    ``localhost``)."""
    parts = urlsplit(url)
    if (
        parts.scheme != "file"
        or parts.netloc not in ("", "localhost")
        or not parts.path.startswith("/")
    ):
        raise SourceError(f"{url}: not a file:///absolute/path URL")
    if "#" in url or "?" in url:
        # A '#' or '?' in a directory name must be percent-encoded (%23, %3F), as in any URL.
        raise SourceError(f"{url}: a file:// URL has no query or fragment (write # as %23)")
    return Path(unquote(parts.path))


class LocalSource:
    """The files of one directory, read in ranges by worker threads."""

    def __init__(self, url: str, *, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.url = url
        self.root = path_from_url(url)
        self._chunk_bytes = chunk_bytes

    async def list_files(self) -> list[FileEntry]:
        return await asyncio.to_thread(self._list_files)

    def _list_files(self) -> list[FileEntry]:
        if not self.root.is_dir():
            raise SourceError(f"{self.url}: no such directory")
        try:
            files = walk_files(self.root)
        except OSError as exc:
            raise SourceError(f"{self.url}: cannot list: {exc}") from exc
        manifest = read_manifest(self.root)
        if manifest is not None:
            listed = [FileEntry(path, size) for path, size in files]
            return with_manifest(listed, manifest, f"{self.url}: its {MANIFEST_NAME}")
        marker = read_marker(self.root)  # a leader's complete DEST
        hashes = {item.path: item.sha256 for item in marker.files} if marker is not None else {}
        return [FileEntry(path, size, hashes.get(path)) for path, size in files]

    def _resolve(self, path: str) -> Path:
        relative = PurePosixPath(path)
        if relative.is_absolute() or ".." in relative.parts:
            raise SourceError(f"{self.url}: {path}: path leaves the source directory")
        return self.root.joinpath(*relative.parts)

    async def reader(self, path: str) -> FileRange:
        return FileRange(self._resolve(path), f"{self.url}: {path}", self._chunk_bytes)

    async def close(self) -> None:
        """Nothing to release: every read closes its own file."""


@dataclass(frozen=True)
class FileRange:
    """A :class:`~tiergate.modelcache.sources.ranged.RangeReader` over a local file: ``pread``
    into a reused buffer of ``piece_bytes``. A missing or unreadable file is final; other
    errors (EIO, ESTALE on network filesystems) are retryable."""

    path: Path
    what: str
    piece_bytes: int = CHUNK_BYTES

    def read_into(self, start: int, end: int, write: Write, stall_s: float) -> None:
        try:
            descriptor = os.open(self.path, os.O_RDONLY)
        except (FileNotFoundError, PermissionError) as exc:
            raise SourceError(f"{self.what}: {exc.strerror}") from exc
        except OSError as exc:
            raise RetryableError(f"{self.what}: {exc.strerror}") from exc
        try:
            buffer = memoryview(bytearray(min(self.piece_bytes, max(end - start, 1))))
            position = start
            while position < end:
                view = buffer[: min(len(buffer), end - position)]
                try:
                    got = os.preadv(descriptor, [view], position)
                except OSError as exc:
                    raise RetryableError(f"{self.what}: {exc.strerror}") from exc
                if not got:
                    raise RetryableError(f"{self.what}: file ends at byte {position}")
                position += got
                write(view[:got])
        finally:
            os.close(descriptor)
