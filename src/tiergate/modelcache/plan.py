"""What a fetch will move: the source's files, their sizes and expected hashes.

A :class:`Plan` is made before any byte moves (sources list, globs select), so that free space
can be checked and a completion marker can name exactly what was fetched (its ``digest``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a model: ``path`` relative to the model root (POSIX separators), its size in
    bytes and its expected sha256 (hex) when the source publishes one."""

    path: str
    size: int
    sha256: str | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """The files to fetch from ``source`` (a URL as the user wrote it), in path order."""

    source: str
    files: tuple[FileEntry, ...]

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.files)

    @property
    def digest(self) -> str:
        """sha256 of the plan's canonical JSON: what the completion marker records."""
        body = [[entry.path, entry.size, entry.sha256] for entry in self.files]
        return hashlib.sha256(orjson.dumps({"source": self.source, "files": body})).hexdigest()
