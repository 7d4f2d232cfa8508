"""The layout of a DEST and its completion marker.

    DEST/
      .tiergate.lock            held (flock) by the one fetcher at work
      .tiergate-staging/        bytes in flight; kept across restarts so a transfer resumes
      .tiergate-complete.json   written last, atomically: the plan digest and every file's hash
      config.json, model-00001-of-00002.safetensors, ...

A DEST without the marker (or whose marker names another plan) is not a model yet, whatever
files it holds: a fetcher removes a stale marker before it changes anything.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tiergate.modelcache.plan import FileEntry, ModelPath, Plan

LOCK_NAME = ".tiergate.lock"
STAGING_NAME = ".tiergate-staging"
MARKER_NAME = ".tiergate-complete.json"


class MarkerFile(BaseModel):
    """One installed file: its path in DEST, size and sha256 (expected, or computed when the
    source published none)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: ModelPath
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Marker(BaseModel):
    """The completion marker: what was fetched (``source``, the globs, the plan ``digest``),
    every file with its hash, the total bytes and when it completed (UTC, ISO 8601)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    source: str
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    digest: str
    files: tuple[MarkerFile, ...]
    bytes: int = Field(ge=0)
    completed_at: str

    @classmethod
    def for_plan(
        cls, plan: Plan, hashes: dict[str, str], include: Iterable[str], exclude: Iterable[str]
    ) -> Marker:
        files = tuple(
            MarkerFile(path=e.path, size=e.size, sha256=hashes[e.path]) for e in plan.files
        )
        return cls(
            source=plan.source,
            include=tuple(include),
            exclude=tuple(exclude),
            digest=plan.digest,
            files=files,
            bytes=plan.total_bytes,
            completed_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    def selects(self, source: str, include: Iterable[str], exclude: Iterable[str]) -> bool:
        """Whether this marker is of the same source and globs (the plan itself unseen)."""
        return (self.source, self.include, self.exclude) == (source, tuple(include), tuple(exclude))


def read_marker(dest: Path) -> Marker | None:
    """The completion marker of ``dest``; None when it has none or an unreadable one (a torn
    or foreign file counts as no marker: the cache is then fetched again)."""
    try:
        return Marker.model_validate_json((dest / MARKER_NAME).read_bytes())
    except (OSError, ValidationError):
        return None


def write_marker(dest: Path, marker: Marker) -> None:
    """Write the marker atomically and durably: temp file, fsync, rename, fsync DEST."""
    temporary = dest / f"{MARKER_NAME}.tmp"
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(marker.model_dump_json(indent=1) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, dest / MARKER_NAME)
    fsync_dir(dest)


def remove_marker(dest: Path) -> None:
    """Unmark ``dest`` (durably) before anything in it changes."""
    with contextlib.suppress(FileNotFoundError):
        (dest / MARKER_NAME).unlink()
        fsync_dir(dest)


def fsync_dir(directory: Path) -> None:
    """Make the renames and removals in ``directory`` durable."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def installed_size_ok(dest: Path, entry: FileEntry | MarkerFile) -> bool:
    """Whether ``dest`` holds a regular file of the entry's size at its path."""
    try:
        return (dest / entry.path).stat().st_size == entry.size
    except OSError:
        return False


def staged_bytes(staging: Path, files: Iterable[FileEntry]) -> int:
    """Bytes of ``files`` already on disk in ``staging`` (a resumed transfer's progress).

    Allocated blocks, not the apparent size, count: a transfer may preallocate sparse files."""
    total = 0
    for entry in files:
        try:
            status = (staging / entry.path).stat()
        except OSError:
            continue
        total += min(status.st_blocks * 512, status.st_size, entry.size)
    return total


def install(staging: Path, dest: Path, paths: Iterable[str]) -> None:
    """Move each staged file into place (``os.replace``, directories created), then fsync the
    directories that changed."""
    touched: set[Path] = set()
    for path in paths:
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / path, target)
        touched.add(target.parent)
    for directory in sorted(touched):
        fsync_dir(directory)


def clear_staging(dest: Path) -> None:
    """Remove what is left of the staging area after a completed fetch."""
    shutil.rmtree(dest / STAGING_NAME, ignore_errors=True)
