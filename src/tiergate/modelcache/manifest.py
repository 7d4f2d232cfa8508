"""``tiergate-manifest.json``: the sizes and sha256 of a published model's files.

A source that cannot publish hashes itself (a plain HTTP directory, a shared filesystem) is
described by this file next to the weights; ``tiergate fetch --write-manifest DIR`` writes it::

    {"version": 1, "files": [{"path": "model-00001-of-00002.safetensors",
                              "size": 4976698672, "sha256": "..."}]}
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tiergate.modelcache.errors import SourceError
from tiergate.modelcache.plan import FileEntry, ModelPath
from tiergate.modelcache.verify import sha256_files

MANIFEST_NAME = "tiergate-manifest.json"

# The fetcher's own bookkeeping in a DEST (lock, completion marker, staging area): never part
# of a model, so never listed as one when a DEST serves as a source in turn.
INTERNAL_PREFIX = ".tiergate"


class _ManifestFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: ModelPath
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class _Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1]
    files: list[_ManifestFile]


def parse_manifest(data: bytes | str, where: str) -> list[FileEntry]:
    """The entries of a manifest's JSON text; ``where`` names it in the error."""
    try:
        manifest = _Manifest.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(part) for part in first["loc"])
        raise SourceError(f"{where}: invalid manifest at {location}: {first['msg']}") from exc
    files = sorted(manifest.files, key=lambda item: item.path)
    return [FileEntry(item.path, item.size, item.sha256) for item in files]


def with_manifest(
    listed: list[FileEntry], manifest: list[FileEntry], where: str, files: str = "files"
) -> list[FileEntry]:
    """``listed`` with the sha256 a manifest (at ``where``) publishes for each file. A manifest
    that disagrees with what is there (a size; a sha256 the store itself reports) or names files
    that are not there is stale: a source error, before any byte moves, rather than repairs
    that end in a hash mismatch. ``files`` is what the source calls them ("objects")."""
    published = {entry.path: entry for entry in manifest}
    entries: list[FileEntry] = []
    for entry in listed:
        claim = published.pop(entry.path, None)
        if claim is None:
            entries.append(entry)
            continue
        if claim.size != entry.size or entry.sha256 not in (None, claim.sha256):
            actual = f"{entry.size} bytes" + (f" and sha256 {entry.sha256}" if entry.sha256 else "")
            raise SourceError(
                f"{where} is stale: it says {entry.path} has {claim.size} bytes, sha256 "
                f"{claim.sha256}; the file has {actual}"
            )
        entries.append(replace(entry, sha256=claim.sha256))
    if published:
        missing = ", ".join(sorted(published)[:5])
        raise SourceError(f"{where} names {files} that are not there: {missing}")
    return entries


def read_manifest(directory: Path) -> list[FileEntry] | None:
    """The manifest in ``directory``, or None when it has none."""
    path = directory / MANIFEST_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SourceError(f"{path}: cannot read manifest: {exc.strerror}") from exc
    return parse_manifest(data, str(path))


def manifest_json(entries: list[FileEntry]) -> str:
    """The manifest text for ``entries`` (every one with a sha256), in path order."""
    files = [
        _ManifestFile(path=entry.path, size=entry.size, sha256=entry.sha256 or "")
        for entry in sorted(entries, key=lambda entry: entry.path)
    ]
    return _Manifest(version=1, files=files).model_dump_json(indent=1) + "\n"


def walk_files(root: Path) -> list[tuple[str, int]]:
    """Every model file under ``root`` as (POSIX path relative to root, size), in path order.

    Symbolic links to files are followed (a Hugging Face cache snapshot is made of them); the
    manifest itself and the fetcher's ``.tiergate*`` bookkeeping are left out."""
    found: list[tuple[str, int]] = []
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(name for name in subdirs if not name.startswith(INTERNAL_PREFIX))
        base = Path(directory)
        for name in names:
            if name.startswith(INTERNAL_PREFIX) or (base == root and name == MANIFEST_NAME):
                continue
            path = base / name
            if path.is_file():
                found.append((path.relative_to(root).as_posix(), path.stat().st_size))
    return sorted(found)


async def write_manifest(directory: Path, *, parallel: int = 4) -> list[FileEntry]:
    """Hash every file of ``directory`` and write its ``tiergate-manifest.json`` (atomically)."""
    files = walk_files(directory)
    hashes = await sha256_files({path: directory / path for path, _ in files}, parallel=parallel)
    entries = [FileEntry(path, size, hashes[path]) for path, size in files]
    temporary = directory / f"{MANIFEST_NAME}.tmp"
    temporary.write_text(manifest_json(entries), encoding="utf-8")
    os.replace(temporary, directory / MANIFEST_NAME)
    return entries
