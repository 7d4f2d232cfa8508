"""safetensors consistency: headers parse, tensors tile the data, the index names real shards."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from tests.modelcache.helpers import safetensors_bytes, write_model
from tiergate.modelcache.errors import VerifyError
from tiergate.modelcache.safetensors import check_dir, check_model

SHARD1 = "model-00001-of-00002.safetensors"
SHARD2 = "model-00002-of-00002.safetensors"


def test_a_valid_model_passes(tmp_path: Path) -> None:
    write_model(tmp_path)
    assert check_dir(tmp_path) == 2


def test_a_single_file_model_without_index_passes(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(
        safetensors_bytes({"w": ("F16", [3, 5]), "empty": ("F32", [0, 4])})
    )
    assert check_dir(tmp_path) == 1


def test_missing_shard_names_the_index_and_the_shard(tmp_path: Path) -> None:
    write_model(tmp_path)
    (tmp_path / SHARD2).unlink()
    with pytest.raises(VerifyError, match=f"model.safetensors.index.json: shard {SHARD2}"):
        check_dir(tmp_path)


def test_truncated_shard_names_the_file_and_a_tensor(tmp_path: Path) -> None:
    write_model(tmp_path)
    shard = tmp_path / SHARD1
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(VerifyError, match=f"{SHARD1}: tensor .*pass the end of the data section"):
        check_dir(tmp_path)


def test_bad_header_json_names_the_file(tmp_path: Path) -> None:
    write_model(tmp_path)
    raw = b"{not json"
    (tmp_path / SHARD2).write_bytes(struct.pack("<Q", len(raw)) + raw)
    with pytest.raises(VerifyError, match=f"{SHARD2}: header is not valid JSON"):
        check_dir(tmp_path)


def test_header_length_past_the_end(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", 10**6) + b"{}")
    with pytest.raises(VerifyError, match=r"model\.safetensors: header length 1000000"):
        check_dir(tmp_path)


def test_too_short_file(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"\x01\x02")
    with pytest.raises(VerifyError, match="too short"):
        check_dir(tmp_path)


def header_file(tmp_path: Path, header: dict[str, object], data_bytes: int) -> None:
    raw = json.dumps(header).encode()
    content = struct.pack("<Q", len(raw)) + raw + bytes(data_bytes)
    (tmp_path / "model.safetensors").write_bytes(content)


def test_dtype_times_shape_must_equal_the_span(tmp_path: Path) -> None:
    header_file(tmp_path, {"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}}, 20)
    with pytest.raises(VerifyError, match=r"model.safetensors: tensor 'w': F32 \[2, 3\] needs 24"):
        check_dir(tmp_path)


@pytest.mark.parametrize(
    ("field", "value"), [("shape", [True, 4]), ("data_offsets", [False, 4]), ("shape", [-1])]
)
def test_booleans_and_negatives_are_not_counts(
    tmp_path: Path, field: str, value: list[object]
) -> None:
    tensor: dict[str, object] = {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}
    tensor[field] = value
    header_file(tmp_path, {"w": tensor}, 4)
    with pytest.raises(VerifyError, match=f"tensor 'w': bad {field}"):
        check_dir(tmp_path)


def test_overlapping_tensors_are_refused(tmp_path: Path) -> None:
    header = {
        "a": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]},
        "b": {"dtype": "U8", "shape": [8], "data_offsets": [4, 12]},
    }
    header_file(tmp_path, header, 12)
    with pytest.raises(VerifyError, match="tensor 'b' starts at 4, expected 8"):
        check_dir(tmp_path)


def test_trailing_bytes_are_refused(tmp_path: Path) -> None:
    header_file(tmp_path, {"a": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]}}, 16)
    with pytest.raises(VerifyError, match="cover 8 of the 16 data bytes"):
        check_dir(tmp_path)


def test_unknown_dtype_skips_only_the_size_check(tmp_path: Path) -> None:
    header_file(tmp_path, {"a": {"dtype": "F3_NEW", "shape": [8], "data_offsets": [0, 3]}}, 3)
    assert check_dir(tmp_path) == 1


def test_index_tensor_must_be_in_its_shard(tmp_path: Path) -> None:
    write_model(tmp_path)
    index_path = tmp_path / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["layers.9.weight"] = SHARD1
    index_path.write_text(json.dumps(index))
    with pytest.raises(VerifyError, match=f"tensor 'layers.9.weight' is not in shard {SHARD1}"):
        check_dir(tmp_path)


def test_an_index_alone_is_not_checked(tmp_path: Path) -> None:
    files = write_model(tmp_path)
    only = {name: tmp_path / name for name in files if name.endswith(".json")}
    assert check_model(only) == 0


def test_an_index_none_of_whose_shards_is_selected_is_not_checked(tmp_path: Path) -> None:
    """Mistral's layout: consolidated.safetensors beside HF shards and their index; fetching
    ``--include consolidated.safetensors --include '*.json'`` is a whole model."""
    files = write_model(tmp_path)
    consolidated = safetensors_bytes({"w": ("F32", [4])})
    (tmp_path / "consolidated.safetensors").write_bytes(consolidated)
    selected = {name: tmp_path / name for name in files if name.endswith(".json")}
    selected["consolidated.safetensors"] = tmp_path / "consolidated.safetensors"
    assert check_model(selected) == 1
    # One shard of the index but not the other is a broken model.
    selected["model-00001-of-00002.safetensors"] = tmp_path / "model-00001-of-00002.safetensors"
    with pytest.raises(VerifyError, match=r"shard model-00002-of-00002\.safetensors .* is missing"):
        check_model(selected)
