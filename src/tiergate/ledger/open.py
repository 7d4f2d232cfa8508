"""The ledger store for a URL: SQLite for ``sqlite:///PATH``, PostgreSQL for
``postgresql://…`` (or ``postgres://…``)."""

from __future__ import annotations

from tiergate.ledger.store import LedgerStore

SQLITE = "sqlite:///"
POSTGRES = ("postgresql://", "postgres://")


def open_store(url: str, *, flush_s: float = 0.2) -> LedgerStore:
    """The store that ``url`` names, not yet opened (``await store.open()`` connects).

    ``sqlite:///ledger.db`` is a path relative to the working directory,
    ``sqlite:////var/lib/tiergate/ledger.db`` an absolute one. The store's ``url`` never holds
    a password. Raises ValueError naming the problem for a URL of no known kind, and when the
    PostgreSQL driver is not installed.
    """
    if url.startswith(SQLITE):
        path = url.removeprefix(SQLITE)
        if not path or path == ":memory:" or "?" in path:
            raise ValueError(f"ledger store {url!r}: expected sqlite:///PATH to a file")
        from tiergate.ledger.sqlite import SQLiteStore  # noqa: PLC0415 - the chosen backend only

        return SQLiteStore(path, flush_s=flush_s)
    if url.startswith(POSTGRES):
        try:
            from tiergate.ledger.postgres import PostgresStore  # noqa: PLC0415
        except ImportError as exc:
            raise ValueError(
                "a postgresql:// ledger store needs asyncpg: pip install 'tiergate[postgres]'"
            ) from exc
        return PostgresStore(url, flush_s=flush_s)
    # Only the scheme: the rest of an unknown URL may hold a password.
    given = f"{url.split('://', 1)[0]}://…" if "://" in url else repr(url)
    raise ValueError(f"ledger store {given}: expected sqlite:///PATH or postgresql://USER@HOST/DB")
