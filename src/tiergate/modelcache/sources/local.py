"""``file:///abs/dir``: a model on a filesystem this pod mounts (EFS, FSx, NFS, a hostPath).

Expected hashes come from a ``tiergate-manifest.json`` in the directory when it has one, else
from a completion marker there (a leader's finished DEST, in leader/worker mode), else none.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from tiergate.modelcache.cache import read_marker
from tiergate.modelcache.errors import RetryableError, SourceError
from tiergate.modelcache.manifest import read_manifest, walk_files
from tiergate.modelcache.plan import FileEntry

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
        hashes = self._published_hashes()
        try:
            files = walk_files(self.root)
        except OSError as exc:
            raise SourceError(f"{self.url}: cannot list: {exc}") from exc
        return [FileEntry(path, size, hashes.get(path)) for path, size in files]

    def _published_hashes(self) -> dict[str, str]:
        manifest = read_manifest(self.root)
        if manifest is not None:
            return {entry.path: entry.sha256 for entry in manifest if entry.sha256}
        marker = read_marker(self.root)
        if marker is not None:
            return {item.path: item.sha256 for item in marker.files}
        return {}

    def _resolve(self, path: str) -> Path:
        relative = PurePosixPath(path)
        if relative.is_absolute() or ".." in relative.parts:
            raise SourceError(f"{self.url}: {path}: path leaves the source directory")
        return self.root.joinpath(*relative.parts)

    async def read(self, path: str, start: int, end: int) -> AsyncIterator[bytes]:
        file_path = self._resolve(path)
        try:
            descriptor = await asyncio.to_thread(os.open, file_path, os.O_RDONLY)
        except (FileNotFoundError, PermissionError) as exc:
            raise SourceError(f"{self.url}: {path}: {exc.strerror}") from exc
        except OSError as exc:  # EIO, ESTALE and the like on network filesystems: try again
            raise RetryableError(f"{self.url}: {path}: {exc.strerror}") from exc
        try:
            position = start
            while position < end:
                size = min(self._chunk_bytes, end - position)
                try:
                    chunk = await asyncio.to_thread(os.pread, descriptor, size, position)
                except OSError as exc:
                    raise RetryableError(f"{self.url}: {path}: {exc.strerror}") from exc
                if not chunk:
                    raise RetryableError(f"{self.url}: {path}: file ends at byte {position}")
                position += len(chunk)
                yield chunk
        finally:
            os.close(descriptor)

    async def close(self) -> None:
        """Nothing to release: every read closes its own file."""
