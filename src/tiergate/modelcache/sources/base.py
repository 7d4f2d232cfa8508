"""The protocol every source implements: list the files, then read byte ranges of them."""

from __future__ import annotations

from typing import Protocol

from tiergate.modelcache.plan import FileEntry
from tiergate.modelcache.sources.ranged import RangeReader


class Source(Protocol):
    """A model's files somewhere. ``reader`` prepares the reading of one file (signs a URL,
    pins a commit) in the event loop; its :class:`RangeReader` then reads byte ranges in a
    worker thread. Both raise :class:`~tiergate.modelcache.errors.FetchError` subclasses
    (retryable or not) and never retry by themselves: the transfer engine does."""

    url: str

    async def list_files(self) -> list[FileEntry]: ...

    async def reader(self, path: str) -> RangeReader: ...

    async def close(self) -> None: ...
