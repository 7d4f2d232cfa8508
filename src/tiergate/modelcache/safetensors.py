"""Consistency of a safetensors model, from headers only (no tensor data is read).

A ``.safetensors`` file is an 8-byte little-endian header length N, N bytes of JSON
(``{"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``), then
the data section. The checks mirror the reference loader's, so that a file passing them does
not fail to load with ``HeaderTooLarge`` or ``MetadataIncompleteBuffer``: the tensors tile the
data section exactly and each one's span equals its dtype size times its element count. An
index (``*.safetensors.index.json``) must name shards that are present and hold its tensors.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from tiergate.modelcache.errors import VerifyError

INDEX_SUFFIX = ".safetensors.index.json"
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the reference loader's limit

# Element sizes in bits (sub-byte float formats included); an unknown dtype skips the size
# check only, so that a model using a newer dtype still passes.
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}  # fmt: skip


def read_header(path: Path, name: str) -> dict[str, Any]:
    """The parsed JSON header of the safetensors file at ``path`` (``name`` in errors)."""
    with path.open("rb") as handle:
        size = path.stat().st_size
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise VerifyError(f"{name}: {size} bytes: too short for a safetensors header")
        (length,) = struct.unpack("<Q", prefix)
        if length > MAX_HEADER_BYTES or 8 + length > size:
            raise VerifyError(
                f"{name}: header length {length} does not fit the file ({size} bytes)"
            )
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise VerifyError(f"{name}: header is not valid JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise VerifyError(f"{name}: header is not a JSON object")
    _check_tensors(header, size - 8 - length, name)
    return header


def _check_tensors(header: dict[str, Any], data_bytes: int, name: str) -> None:
    spans: list[tuple[int, int, str]] = []
    for tensor, info in header.items():
        if tensor == "__metadata__":
            if not isinstance(info, dict):
                raise VerifyError(f"{name}: __metadata__ is not a JSON object")
            continue
        where = f"{name}: tensor {tensor!r}"
        if not isinstance(info, dict):
            raise VerifyError(f"{where}: not a JSON object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(shape, list) or not all(_is_count(dim) for dim in shape):
            raise VerifyError(f"{where}: bad shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_is_count(offset) for offset in offsets)
            or not 0 <= offsets[0] <= offsets[1]
        ):
            raise VerifyError(f"{where}: bad data_offsets {offsets!r}")
        begin, end = offsets
        if end > data_bytes:
            raise VerifyError(
                f"{where}: data_offsets [{begin}, {end}] pass the end of the data section "
                f"({data_bytes} bytes): file truncated?"
            )
        if not isinstance(dtype, str):
            raise VerifyError(f"{where}: bad dtype {dtype!r}")
        bits = DTYPE_BITS.get(dtype)
        if bits is not None and math.prod(shape) * bits != (end - begin) * 8:
            raise VerifyError(
                f"{where}: {dtype} {shape} needs {math.prod(shape) * bits / 8:g} bytes, "
                f"data_offsets span {end - begin}"
            )
        spans.append((begin, end, tensor))
    position = 0
    for begin, end, tensor in sorted(spans):
        if begin != position:
            raise VerifyError(
                f"{name}: tensor {tensor!r} starts at {begin}, expected {position} "
                "(tensors overlap or leave a gap)"
            )
        position = end
    if position != data_bytes:
        raise VerifyError(
            f"{name}: tensors cover {position} of the {data_bytes} data bytes (file corrupt?)"
        )


def _is_count(value: object) -> bool:
    """A JSON integer ≥ 0 (``true`` is an ``int`` to Python, not to the safetensors loader)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_index(index: str, files: Mapping[str, Path], headers: dict[str, dict[str, Any]]) -> None:
    try:
        document = json.loads(files[index].read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VerifyError(f"{index}: index is not valid JSON: {exc}") from exc
    weight_map = document.get("weight_map") if isinstance(document, dict) else None
    if not isinstance(weight_map, dict):
        raise VerifyError(f"{index}: not a safetensors index (no weight_map object)")
    base = PurePosixPath(index).parent
    shards = {(base / str(shard)).as_posix() for shard in weight_map.values()}
    if not shards & headers.keys():
        # None of its shards is selected: another format of the same weights was (Mistral's
        # consolidated.safetensors beside HF shards), or another component (diffusers).
        return
    for tensor, shard in sorted(weight_map.items()):
        shard_path = (base / str(shard)).as_posix()
        if shard_path not in headers:
            raise VerifyError(f"{index}: shard {shard_path} (tensor {tensor!r}) is missing")
        if tensor not in headers[shard_path]:
            raise VerifyError(f"{index}: tensor {tensor!r} is not in shard {shard_path}")


def check_model(files: Mapping[str, Path]) -> int:
    """Check every safetensors file and index among ``files`` (model path -> where it lies now);
    raise :class:`VerifyError` naming the file (and tensor) at fault; return how many
    safetensors files were checked.

    An index is checked only when some shard it names is among ``files``: a selection of
    configs alone (``--include '*.json'``), or of another set of weights, is not a broken
    model; a selection with some of an index's shards but not all of them is."""
    headers = {
        name: read_header(path, name)
        for name, path in sorted(files.items())
        if name.endswith(".safetensors")
    }
    if headers:
        for name in sorted(files):
            if name.endswith(INDEX_SUFFIX):
                _check_index(name, files, headers)
    return len(headers)


def check_dir(root: Path) -> int:
    """:func:`check_model` over every file under ``root``."""
    found = (path for path in root.rglob("*") if path.is_file())
    return check_model({path.relative_to(root).as_posix(): path for path in found})
