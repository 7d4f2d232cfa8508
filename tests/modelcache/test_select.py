"""Globs select files; the space check refuses, with the numbers, before any byte moves."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tiergate.modelcache.errors import SpaceError
from tiergate.modelcache.plan import FileEntry, Plan
from tiergate.modelcache.select import check_space, human_bytes, matches, select

PATHS = [
    "config.json",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "model.safetensors.index.json",
    "original/consolidated.pth",
    "original/params.json",
    "tokenizer/tokenizer.json",
]
PLAN = Plan("file:///m", tuple(FileEntry(path, 10) for path in PATHS))


def selected(include: list[str], exclude: list[str] | None = None) -> list[str]:
    return [entry.path for entry in select(PLAN, include, exclude or []).files]


def test_no_globs_select_everything() -> None:
    assert selected([]) == PATHS


def test_star_crosses_directories_like_fnmatch() -> None:
    assert selected(["*.json"]) == [
        "config.json",
        "model.safetensors.index.json",
        "original/params.json",
        "tokenizer/tokenizer.json",
    ]


def test_double_star_matches_zero_or_more_directories() -> None:
    assert selected(["**/tokenizer.json"]) == ["tokenizer/tokenizer.json"]
    assert selected(["**/config.json"]) == ["config.json"]
    assert matches("a/b/c/w.bin", ["a/**/w.bin"])
    assert matches("a/w.bin", ["a/**/w.bin"])
    assert not matches("b/w.bin", ["a/**/w.bin"])


def test_exclude_wins_over_include() -> None:
    assert selected(["*.safetensors", "*.json"], ["original/*", "tokenizer/**"]) == [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
    ]


def test_selection_changes_the_digest() -> None:
    assert select(PLAN, ["*.json"]).digest != PLAN.digest
    assert select(PLAN, []).digest == PLAN.digest


def test_space_refused_with_needed_and_free_bytes(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    huge = Plan("file:///m", (FileEntry("big.bin", free + 2**40),))
    with pytest.raises(SpaceError) as caught:
        check_space(tmp_path, huge)
    message = str(caught.value)
    assert f"({free + 2**40} bytes)" in message
    assert "free" in message
    assert "TiB" in message


def test_bytes_already_present_count_against_the_need(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    plan = Plan("file:///m", (FileEntry("big.bin", free + 2**30),))
    assert check_space(tmp_path, plan, already_present_bytes=2**31) == free - 2**30


def test_human_bytes() -> None:
    assert human_bytes(512) == "512 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(3 * 2**30) == "3.0 GiB"
