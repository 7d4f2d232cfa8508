"""The protocol every source implements: list the files, then read byte ranges of them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from tiergate.modelcache.plan import FileEntry


class Source(Protocol):
    """A model's files somewhere. ``read`` yields the bytes ``[start, end)`` of one file, in
    order, in chunks of any size; it raises :class:`~tiergate.modelcache.errors.FetchError`
    subclasses (retryable or not) and never retries by itself: the transfer engine does."""

    url: str

    async def list_files(self) -> list[FileEntry]: ...

    def read(self, path: str, start: int, end: int) -> AsyncIterator[bytes]: ...

    async def close(self) -> None: ...
