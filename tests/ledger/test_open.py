"""``open_store``: the store kind and path a URL names; bad URLs are refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiergate.ledger.open import open_store
from tiergate.ledger.postgres import PostgresStore
from tiergate.ledger.sqlite import SQLiteStore


def test_sqlite_relative_and_absolute_paths() -> None:
    relative = open_store("sqlite:///data/ledger.db")
    assert isinstance(relative, SQLiteStore)
    assert relative.path == Path("data/ledger.db")
    absolute = open_store("sqlite:////var/lib/tiergate/ledger.db", flush_s=0.05)
    assert isinstance(absolute, SQLiteStore)
    assert absolute.path == Path("/var/lib/tiergate/ledger.db")
    assert absolute.url == "sqlite:////var/lib/tiergate/ledger.db"


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_postgres_urls_without_their_password(scheme: str) -> None:
    store = open_store(f"{scheme}://ledger:hunter2@db.internal:5432/tiergate")
    assert isinstance(store, PostgresStore)
    assert store.url == f"{scheme}://ledger@db.internal:5432/tiergate"


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("mysql://root:hunter2@db/ledger", "mysql://…"),
        ("ledger.db", "'ledger.db'"),
        ("sqlite:///", "sqlite:///"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
    ],
)
def test_unknown_or_unusable_urls_are_refused(url: str, named: str) -> None:
    with pytest.raises(ValueError, match="expected sqlite:///PATH") as caught:
        open_store(url)
    assert named in str(caught.value)
    assert "hunter2" not in str(caught.value)
