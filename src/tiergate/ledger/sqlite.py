"""The embedded ledger: one SQLite file, for one gateway process (``sqlite:///PATH``).

Writes: one dedicated writer thread owns the write connection and commits queued records in
groups, at least every ``flush_s`` and sooner once many wait. ``record`` only appends to a
bounded in-memory queue. Reads and key writes run in worker threads (``asyncio.to_thread``) on
connections of their own, so the event loop never waits on the disk; WAL mode lets them read
while the writer writes.

Crash guarantee: the database runs in WAL mode with ``synchronous=NORMAL``. A committed group
is in the WAL file before ``flush`` returns, so it survives the process being killed (kill -9,
OOM): such a crash loses at most the records queued since the last group commit, that is
those of the last ``flush_s`` plus the time a commit takes (answers lost up to ~200 ms before
the kill measured for 200 ms on a saturated 2-core machine, tests/e2e). Power loss or an OS
crash can also lose the last commits before a WAL checkpoint (NORMAL does not fsync each
commit); the file itself stays consistent.

When writes fail (disk full, I/O error, database locked past ``busy_timeout_s``, or any other
error, a bug included) the store logs one line, ``available`` turns False, the records stay
queued (up to ``queue_limit``, newer ones are then dropped and counted) and the writer tries
again at the next group commit: the writer thread runs until ``close``. A record that SQLite
refuses by itself (a string that is not UTF-8, an integer past 64 bits, a constraint) is
dropped, logged once per kind of error, and the others are written.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tiergate.ledger.pending import Health, PendingRecords, WriteStats, log
from tiergate.ledger.records import KeyRecord, RequestRecord, Scope
from tiergate.ledger.rows import (
    KEY_COLUMNS,
    REQUEST_COLUMNS,
    SCOPE_COLUMNS,
    key_from_row,
    key_row,
    request_from_row,
    request_row,
    schema,
)
from tiergate.ledger.store import KeyConflictError, StoreUnavailableError

T = TypeVar("T")

SCHEMA = schema({"real": "REAL", "integer": "INTEGER", "text": "TEXT"}, "INTEGER PRIMARY KEY")

INSERT_REQUESTS = f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) VALUES "
ROW_PLACEHOLDERS = f"({', '.join('?' for _ in REQUEST_COLUMNS)})"
SELECT_REQUESTS = f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests"
INSERT_KEY = (
    f"INSERT INTO keys ({', '.join(KEY_COLUMNS)}) VALUES ({', '.join('?' for _ in KEY_COLUMNS)})"
)
SELECT_KEYS = f"SELECT {', '.join(KEY_COLUMNS)} FROM keys"

BATCH_ROWS = 5000  # records per transaction at most
# Records per INSERT statement. One multi-row statement rather than ``executemany``: the sqlite3
# module releases the GIL around every statement step, and while the event loop thread is busy
# each release costs the writer up to the GIL switch interval (5 ms), so one row per step made a
# 1,000-row commit take ~0.9 s under load; 500 rows per step take ~20 ms.
STATEMENT_ROWS = 500
WAKE_AT = 1000  # queued records that start a group commit before flush_s is up
NO_SIZE_LIMIT = 4_294_967_294  # SQLite's largest max_page_count
# The sqlite3 errors that are about a record (a value it cannot bind, a constraint it breaks),
# not about the database: the record is dropped and the others are written. Binding fails
# before a statement runs and a constraint undoes only its statement, so the transaction goes on.
RECORD_ERRORS = (
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    sqlite3.DataError,
)


class SQLiteStore:
    """The SQLite ledger store (see the module docstring for its guarantees).

    ``max_bytes`` caps the database file (``PRAGMA max_page_count``): writes past it fail as on
    a full disk. It may be changed while the store is open; the writer applies it before its
    next group commit.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        flush_s: float = 0.2,
        queue_limit: int = 100_000,
        busy_timeout_s: float = 2.0,
        max_bytes: int | None = None,
        close_timeout_s: float = 10.0,
    ) -> None:
        if flush_s <= 0:
            raise ValueError(f"flush_s must be positive, got {flush_s}")
        self.path = Path(path)
        self.url = f"sqlite:///{path}"
        self.max_bytes = max_bytes
        self._flush_s = flush_s
        self._busy_timeout_s = busy_timeout_s
        self._close_timeout_s = close_timeout_s
        self._stop_by = 0.0  # monotonic time after which the closing writer gives up
        self._pending = PendingRecords(queue_limit, self.url)
        self._writes = Health(self.url, "writes")
        self._reads = Health(self.url, "reads")
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._waiters: list[tuple[int, concurrent.futures.Future[None]]] = []
        self._waiters_lock = threading.Lock()
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the file and the schema when missing, then start the writer thread."""
        if self._thread is not None or self._closed:
            raise RuntimeError(f"ledger {self.url} was already opened")
        try:
            await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailableError(f"ledger {self.url}: {exc}") from exc
        await self._read(self._create_schema)
        self._thread = threading.Thread(
            target=self._run, name="tiergate-ledger-sqlite", daemon=True
        )
        self._thread.start()

    async def close(self) -> None:
        """Write every queued record, stop the writer and close every connection.

        While writes fail, the writer keeps trying for up to ``close_timeout_s``; then
        :class:`StoreUnavailableError` says how many records could not be written (they are
        lost).
        """
        if self._closed:
            return
        self._closed = True
        self._pending.close()
        thread = self._thread
        if thread is not None:
            self._stop_by = time.monotonic() + self._close_timeout_s
            self._stopping = True
            self._wake.set()
            await asyncio.to_thread(thread.join)
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        left = len(self._pending)
        if left:
            raise StoreUnavailableError(f"ledger {self.url}: {left} records could not be written")

    # -- request records ---------------------------------------------------------------------

    def record(self, record: RequestRecord) -> None:
        """Queue ``record`` for the next group commit. Never blocks, never raises."""
        if self._pending.put(record) and len(self._pending) >= WAKE_AT:
            self._wake.set()

    async def flush(self) -> None:
        """Wait until every record queued so far is committed.

        Raises :class:`StoreUnavailableError` when the write fails (the records stay queued).
        """
        target = self._pending.accepted
        if self._pending.settled >= target:
            return
        if self._thread is None or self._stopping or not self._thread.is_alive():
            raise StoreUnavailableError(f"ledger {self.url} is not open")
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._waiters_lock:
            self._waiters.append((target, done))
        self._wake.set()
        await asyncio.wrap_future(done)

    @property
    def available(self) -> bool:
        return self.problem is None

    @property
    def problem(self) -> str | None:
        """Why the store is not available (None while it is)."""
        if self._thread is not None and not self._thread.is_alive() and not self._closed:
            return "the writer thread stopped"
        return self._writes.problem or self._reads.problem

    @property
    def stats(self) -> WriteStats:
        return self._pending.stats()

    async def spend(self, scope: Scope, since: float) -> float:
        column = SCOPE_COLUMNS[scope.kind]
        query = f"SELECT COALESCE(SUM(cost_usd), 0.0) FROM requests WHERE {column} = ? AND at >= ?"

        def spend(connection: sqlite3.Connection) -> float:
            total: float = connection.execute(query, (scope.name, since)).fetchone()[0]
            return float(total)

        return await self._read(spend)

    async def requests(self, since: float, until: float) -> list[RequestRecord]:
        query = f"{SELECT_REQUESTS} WHERE at >= ? AND at < ? ORDER BY at, id"

        def fetch(connection: sqlite3.Connection) -> list[RequestRecord]:
            return [request_from_row(row) for row in connection.execute(query, (since, until))]

        return await self._read(fetch)

    # -- keys --------------------------------------------------------------------------------

    async def add_key(self, key: KeyRecord) -> None:
        def add(connection: sqlite3.Connection) -> None:
            try:
                connection.execute(INSERT_KEY, key_row(key))
            except sqlite3.IntegrityError as exc:
                raise KeyConflictError(f"key {key.key_id}: id or hash already stored") from exc

        await self._read(add)

    async def revoke_key(self, key_id: str, at: float) -> bool:
        query = "UPDATE keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL"
        return await self._read(lambda c: c.execute(query, (at, key_id)).rowcount > 0)

    async def list_keys(self) -> list[KeyRecord]:
        query = f"{SELECT_KEYS} ORDER BY created_at, key_id"
        return await self._read(lambda c: [key_from_row(row) for row in c.execute(query)])

    async def find_key(self, key_hash: str) -> KeyRecord | None:
        query = f"{SELECT_KEYS} WHERE key_hash = ?"

        def find(connection: sqlite3.Connection) -> KeyRecord | None:
            row = connection.execute(query, (key_hash,)).fetchone()
            return None if row is None else key_from_row(row)

        return await self._read(find)

    # -- connections -------------------------------------------------------------------------

    def _connect(self, *, any_thread: bool) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout_s,
            isolation_level=None,  # autocommit; the writer opens its transactions itself
            check_same_thread=not any_thread,
        )
        try:
            connection.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error:
            connection.close()
            raise
        return connection

    def _create_schema(self, connection: sqlite3.Connection) -> None:
        # WAL is a property of the file: set once, every later connection uses it.
        connection.execute("PRAGMA journal_mode=WAL")
        connection.executescript(SCHEMA)

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in a worker thread on a connection of the read pool."""
        if self._closed:
            raise StoreUnavailableError(f"ledger {self.url} is closed")
        return await asyncio.to_thread(self._with_reader, work)

    def _with_reader(self, work: Callable[[sqlite3.Connection], T]) -> T:
        try:
            try:
                connection = self._readers.get_nowait()
            except queue.Empty:
                connection = self._connect(any_thread=True)
                with self._connections_lock:
                    self._connections.append(connection)
            try:
                result = work(connection)
            finally:
                self._readers.put(connection)
        except sqlite3.Error as exc:
            self._reads.failed(exc)
            raise StoreUnavailableError(f"ledger {self.url}: {exc}") from exc
        self._reads.succeeded()
        return result

    # -- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        statement_rows = 1
        applied_max_bytes: int | None = None
        next_commit = time.monotonic() + self._flush_s
        try:
            while True:
                # Group commits start every flush_s (not flush_s after the last one ended), so
                # a record waits at most flush_s plus one commit's time.
                self._wake.wait(max(0.0, next_commit - time.monotonic()))
                self._wake.clear()
                next_commit = time.monotonic() + self._flush_s
                stopping = self._stopping
                try:
                    if connection is None:
                        connection = self._connect(any_thread=False)
                        statement_rows = rows_per_statement(connection)
                        applied_max_bytes = None
                    if applied_max_bytes != self.max_bytes:
                        self._apply_max_bytes(connection)
                        applied_max_bytes = self.max_bytes
                    self._write_queued(connection, statement_rows)
                except Exception as exc:  # noqa: BLE001 - any failure: keep queued, try again
                    # Whatever failed, the records stay queued and the writer keeps running:
                    # a writer that stopped would lose every record after them.
                    self._writes.failed(exc, trace=not isinstance(exc, sqlite3.Error))
                    self._answer_waiters(failed=exc)
                    # A fresh connection for the next try: after an I/O error the old one may
                    # be left in a state SQLite does not recover from by itself.
                    if connection is not None:
                        connection.close()
                        connection = None
                else:
                    self._answer_waiters(failed=None)
                if stopping and (not len(self._pending) or time.monotonic() >= self._stop_by):
                    return
        except BaseException:
            # Only the loop's own code is left outside the ``except`` above: a bug. Say so
            # loudly; ``available`` turns False.
            log.exception("ledger %s: the writer thread stopped", self.url)
            raise
        finally:
            if connection is not None:
                connection.close()
            self._answer_waiters(failed=StoreUnavailableError(f"ledger {self.url} is closed"))

    def _apply_max_bytes(self, connection: sqlite3.Connection) -> None:
        pages = NO_SIZE_LIMIT
        if self.max_bytes is not None:
            page_size: int = connection.execute("PRAGMA page_size").fetchone()[0]
            pages = max(1, self.max_bytes // page_size)
        connection.execute(f"PRAGMA max_page_count = {pages}")

    def _write_queued(self, connection: sqlite3.Connection, statement_rows: int) -> None:
        """Commit every record queued when called, in transactions of at most BATCH_ROWS."""
        target = self._pending.accepted
        while self._pending.settled < target:
            batch = self._pending.peek(BATCH_ROWS)
            refused: list[Exception] = []
            connection.execute("BEGIN IMMEDIATE")
            try:
                for start in range(0, len(batch), statement_rows):
                    rows = batch[start : start + statement_rows]
                    try:
                        _insert(connection, rows)
                    except Exception as exc:
                        if not _refused(exc):
                            raise
                        # One record or more cannot be stored: one by one, to drop only those.
                        refused.extend(_insert_each(connection, rows))
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            # Health first: a flush() that sees the records written also sees writes working.
            self._writes.succeeded()
            self._pending.remove(len(batch), refused)

    def _answer_waiters(self, failed: BaseException | None) -> None:
        """Resolve the flushes whose records are written; fail them all when a write failed."""
        written = self._pending.settled
        with self._waiters_lock:
            waiting, self._waiters = self._waiters, []
            for target, done in waiting:
                if done.cancelled():  # the flush was cancelled: nobody waits any more
                    continue
                if written >= target:
                    done.set_result(None)
                elif failed is not None:
                    error = StoreUnavailableError(f"ledger {self.url}: {failed}")
                    done.set_exception(error)
                else:
                    self._waiters.append((target, done))


def _insert(connection: sqlite3.Connection, records: list[RequestRecord]) -> None:
    values = [value for record in records for value in request_row(record)]
    connection.execute(INSERT_REQUESTS + ",".join([ROW_PLACEHOLDERS] * len(records)), values)


def _insert_each(connection: sqlite3.Connection, records: list[RequestRecord]) -> list[Exception]:
    """Insert ``records`` one at a time; the errors of those SQLite refused (left out)."""
    refused = []
    for record in records:
        try:
            _insert(connection, [record])
        except Exception as exc:
            if not _refused(exc):
                raise
            refused.append(exc)
    return refused


def _refused(error: Exception) -> bool:
    """Whether ``error`` is about the records written rather than the database: a sqlite3
    record error, or one raised in converting a value (UnicodeEncodeError for a lone
    surrogate, OverflowError for an integer past 64 bits, ...)."""
    return isinstance(error, RECORD_ERRORS) or not isinstance(error, sqlite3.Error)


def rows_per_statement(connection: sqlite3.Connection) -> int:
    """STATEMENT_ROWS, or fewer where this SQLite allows fewer bound parameters per statement."""
    parameters = connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    return max(1, min(STATEMENT_ROWS, parameters // len(REQUEST_COLUMNS)))
