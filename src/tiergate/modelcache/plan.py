"""What a fetch will move: the source's files, their sizes and expected hashes.

A :class:`Plan` is made before any byte moves (sources list, globs select), so that free space
can be checked and a completion marker can name exactly what was fetched (its ``digest``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated

import orjson
from pydantic import AfterValidator

from tiergate.modelcache.errors import SourceError


def unsafe_path_reason(path: str) -> str | None:
    """Why ``path`` cannot name a file under a model root (and so under DEST), else ``None``:
    absolute, backslashes, empty, ``.`` or ``..`` parts. Every listed path is checked before
    anything in DEST is touched: a stray ``//`` in an S3 key or a hostile listing must not
    reach outside it."""
    if not path:
        return "empty"
    if path.startswith("/"):
        return "absolute"
    if "\\" in path:
        return "contains a backslash"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return "has an empty, '.' or '..' part"
    return None


def _require_safe_path(path: str) -> str:
    reason = unsafe_path_reason(path)
    if reason is not None:
        raise ValueError(f"not a plain relative path: {path!r} ({reason})")
    return path


# A path field of a manifest or a completion marker: read from files that a hand may have
# edited, so checked on the way in like every listing.
ModelPath = Annotated[str, AfterValidator(_require_safe_path)]


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a model: ``path`` relative to the model root (POSIX separators), its size in
    bytes, its expected sha256 (hex) when the source publishes one, and its ``version`` when the
    source names one (an S3 or HTTP ETag, a Hub git blob id): what changes when the file does,
    so that a changed file is never finished from an earlier run's bytes."""

    path: str
    size: int
    sha256: str | None = None
    version: str | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """The files to fetch from ``source`` (a URL as the user wrote it), in path order."""

    source: str
    files: tuple[FileEntry, ...]

    def __post_init__(self) -> None:
        for entry in self.files:
            reason = unsafe_path_reason(entry.path)
            if reason is not None:
                raise SourceError(
                    f"{self.source}: refusing unsafe file path {entry.path!r} ({reason})"
                )

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.files)

    @property
    def digest(self) -> str:
        """sha256 of the plan's canonical JSON: what the completion marker records."""
        body = [
            [entry.path, entry.size, entry.sha256]
            + ([entry.version] if entry.version is not None else [])
            for entry in self.files
        ]
        return hashlib.sha256(orjson.dumps({"source": self.source, "files": body})).hexdigest()
