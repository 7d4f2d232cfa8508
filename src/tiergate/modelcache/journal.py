"""The per-file record of completed chunks that lets a killed transfer resume.

``<file>.tiergate-journal`` sits next to the staging file from its first byte until the staging
area is cleared (after the completion marker). Its first line names the file size, expected
sha256, source version (an ETag, a git blob id) and chunk size it was written for; each further
line is the index of a chunk whose bytes were written before the line was appended. A killed
process loses neither (both are in the page cache). After a machine crash the journal may name
a chunk whose bytes did not reach the disk: when the file has an expected sha256 the hash check
finds that and the file is fetched again; without one, the transfer fsyncs each chunk's bytes
and the journal line (``durable=True``), so that the journal never runs ahead of the disk.

A journal written for another file (size, sha256 or version) or chunk size is not used, and a
staged file without a journal is not trusted: that file starts over. So a file the source
changed between two runs is never finished from the old one's bytes, even when no hash could
tell. A torn last line (power loss) is cut off when the journal is reopened.

The functions are blocking (file I/O and fsync): the transfer runs them in worker threads.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

JOURNAL_SUFFIX = ".tiergate-journal"
_MAGIC = "tiergate-journal 2"


def journal_path(file: Path) -> Path:
    """Where the journal of ``file`` lives."""
    return file.with_name(file.name + JOURNAL_SUFFIX)


def _header(size: int, sha256: str | None, version: str | None, chunk_bytes: int) -> bytes:
    # A version is free text (an ETag has quotes): its hash keeps the line plain.
    tag = hashlib.sha256(version.encode()).hexdigest()[:32] if version is not None else "-"
    line = f"{_MAGIC} size={size} sha256={sha256 or '-'} version={tag} chunk={chunk_bytes}\n"
    return line.encode()


@dataclass(frozen=True, slots=True)
class JournalState:
    """What a journal on disk says: the chunks recorded and where its valid part ends."""

    chunks: frozenset[int]
    valid_bytes: int


def read_journal(
    path: Path,
    size: int,
    sha256: str | None,
    chunk_bytes: int,
    n_chunks: int,
    *,
    version: str | None = None,
) -> JournalState | None:
    """The completed chunks a journal records, or ``None`` when there is none usable (missing, or
    written for another file or chunk size)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    header = _header(size, sha256, version, chunk_bytes)
    if not raw.startswith(header):
        return None
    chunks: set[int] = set()
    valid = len(header)
    for line in raw[len(header) :].split(b"\n")[:-1]:  # the part after the last \n is torn
        if not line.isdigit() or int(line) >= n_chunks:
            break
        chunks.add(int(line))
        valid += len(line) + 1
    return JournalState(frozenset(chunks), valid)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """An open journal, appended to by several threads (``O_APPEND`` keeps lines whole)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def create(
        cls,
        path: Path,
        size: int,
        sha256: str | None,
        chunk_bytes: int,
        *,
        version: str | None = None,
    ) -> Journal:
        """A new, empty journal, durable (directory entry included) before it returns, so that
        it always comes before the bytes it vouches for."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        try:
            os.write(fd, _header(size, sha256, version, chunk_bytes))
            os.fsync(fd)
            _fsync_dir(path.parent)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd)

    @classmethod
    def reopen(cls, path: Path, state: JournalState) -> Journal:
        """Continue an existing journal after its valid part (a torn tail is cut off)."""
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            if os.fstat(fd).st_size != state.valid_bytes:
                os.ftruncate(fd, state.valid_bytes)
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd)

    def record(self, index: int, *, durable: bool) -> None:
        """Append chunk ``index``. Call only after that chunk's bytes are written (with
        ``durable``: fsync'ed, and the line is fsync'ed too)."""
        os.write(self._fd, b"%d\n" % index)
        if durable:
            os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)
