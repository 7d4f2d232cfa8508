"""Where a fleet's ledger lives: its store URL, relative SQLite paths taken from the spec's
directory (so ``serve``, ``keys`` and ``report`` find the same file wherever they start)."""

from __future__ import annotations

from pathlib import Path

from tiergate.spec import Fleet

SQLITE = "sqlite:///"


def store_url(fleet: Fleet, override: str | None = None) -> str:
    """The store URL for ``fleet`` (``override`` wins), with SQLite paths made absolute."""
    url = override or (fleet.governance.ledger.store if fleet.governance else None)
    if url is None:
        raise ValueError(
            f"{fleet.source}: no governance.ledger.store (and no --store): where is the ledger?"
        )
    if url.startswith(SQLITE):
        path = Path(url.removeprefix(SQLITE))
        if not path.is_absolute():
            path = Path(fleet.source).resolve().parent / path
        return SQLITE + str(path)
    return url
