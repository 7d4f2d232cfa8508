"""What the fetcher tests share: synthetic safetensors models, sources that count or corrupt
what they read, and a loopback HTTP server that serves a directory with ranges."""

from __future__ import annotations

import json
import math
import os
import struct
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from aiohttp import web

from tests.loopback import LoopbackServer
from tiergate.modelcache.plan import FileEntry
from tiergate.modelcache.sources.local import LocalSource
from tiergate.modelcache.sources.ranged import RangeReader, Write

DTYPE_BYTES = {"F32": 4, "BF16": 2, "F16": 2, "I64": 8, "U8": 1}


def safetensors_bytes(
    tensors: dict[str, tuple[str, list[int]]], metadata: dict[str, str] | None = None
) -> bytes:
    """A valid safetensors file holding ``tensors`` (name -> (dtype, shape)) of random data."""
    header: dict[str, object] = {}
    data = bytearray()
    for name, (dtype, shape) in tensors.items():
        size = math.prod(shape) * DTYPE_BYTES[dtype]
        header[name] = {
            "dtype": dtype,
            "shape": shape,
            "data_offsets": [len(data), len(data) + size],
        }
        data += os.urandom(size)
    if metadata is not None:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)  # the reference writer pads the header to 8 bytes
    return struct.pack("<Q", len(raw)) + raw + bytes(data)


def write_model(root: Path, shards: int = 2, *, rows: int = 64) -> dict[str, bytes]:
    """A small sharded model under ``root``: config, index and ``shards`` shards of two tensors
    each (with a ``__metadata__``). Returns path -> content."""
    files: dict[str, bytes] = {"config.json": b'{"model_type": "tiny"}'}
    weight_map: dict[str, str] = {}
    for shard in range(1, shards + 1):
        name = f"model-{shard:05d}-of-{shards:05d}.safetensors"
        tensors = {
            f"layers.{shard}.weight": ("BF16", [rows, 32]),
            f"layers.{shard}.bias": ("F32", [rows]),
        }
        files[name] = safetensors_bytes(tensors, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, name))
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    files["model.safetensors.index.json"] = json.dumps(index).encode()
    for path, content in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(content)
    return files


class CountingSource:
    """A :class:`LocalSource` that counts listings, and read calls and bytes per path."""

    def __init__(
        self,
        root: Path,
        reads: Counter[str] | None = None,
        versions: Mapping[str, str] | None = None,
    ) -> None:
        self.inner = LocalSource(root.as_uri())
        self.url = self.inner.url
        self.versions = dict(versions or {})  # listed as the source's versions of these paths
        self.listings = 0
        self.reads: Counter[str] = Counter() if reads is None else reads
        self.bytes_read: Counter[str] = Counter()
        self.lock = threading.Lock()

    async def list_files(self) -> list[FileEntry]:
        self.listings += 1
        listed = await self.inner.list_files()
        return [replace(entry, version=self.versions.get(entry.path)) for entry in listed]

    async def reader(self, path: str) -> RangeReader:
        inner = await self.inner.reader(path)
        return _Counted(self, path, inner)

    async def close(self) -> None:
        await self.inner.close()


class CorruptingSource(CountingSource):
    """Flips the first byte read of ``path`` on its first ``times`` reads (``None``: always),
    as a flaky network or disk would."""

    def __init__(self, root: Path, path: str, times: int | None = 1) -> None:
        super().__init__(root)
        self.path = path
        self.times = times

    async def reader(self, path: str) -> RangeReader:
        counted = await super().reader(path)
        if path != self.path:
            return counted
        return _Corrupted(self, counted)


@dataclass
class _Counted:
    """Counts one read call and its bytes per path, in the worker thread that reads."""

    source: CountingSource
    path: str
    inner: RangeReader

    def read_into(self, start: int, end: int, write: Write, stall_s: float) -> None:
        with self.source.lock:  # reads run in the transfer's threads
            self.source.reads[self.path] += 1

        def counted(piece: memoryview) -> None:
            with self.source.lock:
                self.source.bytes_read[self.path] += len(piece)
            write(piece)

        self.inner.read_into(start, end, counted, stall_s)


@dataclass
class _Corrupted:
    """Flips the first byte of a read while the source's ``times`` last."""

    source: CorruptingSource
    inner: _Counted | RangeReader

    def read_into(self, start: int, end: int, write: Write, stall_s: float) -> None:
        times, done = self.source.times, self.source.reads[self.source.path]
        corrupt = times is None or done < times

        def flipped(piece: memoryview) -> None:
            nonlocal corrupt
            if corrupt and len(piece):
                corrupt = False
                write(memoryview(bytes([piece[0] ^ 0xFF]) + piece[1:]))
            else:
                write(piece)

        self.inner.read_into(start, end, flipped, stall_s)


class DirectoryServer(LoopbackServer):
    """Serves the files of ``root`` under ``/model/`` (ranges, ``HEAD``) and counts the bytes
    each data ``GET`` asked for, per path (the manifest not counted)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requested: Counter[str] = Counter()
        self.failing: set[str] = set()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/model/"

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/model/{path:.+}", self._get)
        return app

    async def _get(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        file = self.root / path
        if path in self.failing:
            return web.Response(status=500, text="injected failure")
        if not file.is_file():
            raise web.HTTPNotFound()
        data = file.read_bytes()  # small files; no FileResponse: a client that hangs up
        size = len(data)  # mid-sendfile left its file open (a ResourceWarning in this process)
        ranges = request.http_range
        start = ranges.start or 0
        stop = size if ranges.stop is None else min(ranges.stop, size)
        if path != "tiergate-manifest.json":
            self.requested[path] += stop - start
        if "Range" not in request.headers:
            return web.Response(body=data)
        headers = {"Content-Range": f"bytes {start}-{stop - 1}/{size}"}
        return web.Response(status=206, body=data[start:stop], headers=headers)
