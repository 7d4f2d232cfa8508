"""Shared fixtures: paths to the repository's example and test data."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def examples() -> Path:
    return ROOT / "examples"


@pytest.fixture
def test_data() -> Path:
    return ROOT / "tests" / "data"
