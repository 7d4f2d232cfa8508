"""The shared ledger: PostgreSQL through asyncpg, for several gateway replicas
(``postgresql://USER[:PASSWORD]@HOST[:PORT]/DB``).

Writes: ``record`` appends to a bounded in-memory queue; a background task of the event loop
commits the queue in groups with ``COPY`` (one statement, one transaction per batch), at least
every ``flush_s`` and sooner once many wait. Reads and key writes use the same connection pool.
Times are stored as ``double precision`` Unix seconds, as in the records.

When PostgreSQL cannot be reached or refuses a write, the store logs one line, ``available``
turns False, the records stay queued (up to ``queue_limit``; newer ones are then dropped and
counted) and the next group commit tries again on a fresh connection; an unexpected error (a
bug) is handled the same way, so the group-commit task runs until ``close``. A record that
cannot be stored by itself (a value asyncpg cannot encode, such as a lone surrogate or an
integer past 64 bits, or one PostgreSQL rejects as data) is dropped, logged once per kind of
error, and the others are written. A process crash loses the
records queued since the last group commit (at most ``flush_s`` of them); committed ones are
PostgreSQL's to keep. When a commit's acknowledgement is lost with the connection, the batch is
written again: a record can then appear twice, never zero times.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped, import-not-found, unused-ignore]

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

SCHEMA = schema(
    {"real": "double precision", "integer": "bigint", "text": "text"}, "bigserial PRIMARY KEY"
)

# Replicas starting together would race on CREATE TABLE IF NOT EXISTS: one creates at a time.
SCHEMA_LOCK = 0x7469_6572_6761  # "tierga"

SELECT_REQUESTS = f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests"
INSERT_KEY = (
    f"INSERT INTO keys ({', '.join(KEY_COLUMNS)}) "
    f"VALUES ({', '.join(f'${n}' for n in range(1, len(KEY_COLUMNS) + 1))})"
)
SELECT_KEYS = f"SELECT {', '.join(KEY_COLUMNS)} FROM keys"

BATCH_ROWS = 5000  # records per COPY at most
WAKE_AT = 1000  # queued records that start a group commit before flush_s is up

# What "PostgreSQL is unreachable or refused": translated to StoreUnavailableError or retried.
DOWN: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)


def redact_dsn(dsn: str) -> str:
    """``dsn`` without its password (in the user part or as a ``password`` parameter)."""
    parts = urlsplit(dsn)
    netloc = parts.netloc
    if "@" in netloc:
        user, host = netloc.rsplit("@", 1)
        netloc = f"{user.split(':', 1)[0]}@{host}"
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query)))


class PostgresStore:
    """The PostgreSQL ledger store (see the module docstring for its guarantees)."""

    def __init__(
        self,
        dsn: str,
        *,
        flush_s: float = 0.2,
        queue_limit: int = 100_000,
        pool_size: int = 4,
        timeout_s: float = 5.0,
        close_timeout_s: float = 10.0,
    ) -> None:
        if flush_s <= 0:
            raise ValueError(f"flush_s must be positive, got {flush_s}")
        self.url = redact_dsn(dsn)
        self._dsn = dsn
        self._flush_s = flush_s
        self._pool_size = pool_size
        self._timeout_s = timeout_s
        self._close_timeout_s = close_timeout_s
        self._pending = PendingRecords(queue_limit, self.url)
        self._writes = Health(self.url, "writes")
        self._reads = Health(self.url, "reads")
        self._pool: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._writer: asyncio.Task[None] | None = None
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, create the schema when missing and start the group-commit task."""
        if self._pool is not None or self._stopping:
            raise RuntimeError(f"ledger {self.url} was already opened")
        try:
            pool = await asyncpg.create_pool(
                self._dsn,
                # No floor to keep: during an outage asyncpg would log each failed refill.
                min_size=0,
                max_size=self._pool_size,
                timeout=self._timeout_s,
                command_timeout=self._timeout_s,
            )
        except DOWN as exc:
            raise StoreUnavailableError(f"ledger {self.url}: {exc}") from exc
        try:
            async with pool.acquire() as connection, connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
                await connection.execute(SCHEMA)
        except DOWN as exc:
            await _close_pool(pool, self._timeout_s)
            raise StoreUnavailableError(f"ledger {self.url}: {exc}") from exc
        self._pool = pool
        self._loop = asyncio.get_running_loop()
        self._writer = asyncio.create_task(self._run(), name="tiergate-ledger-postgres")

    async def close(self) -> None:
        """Write every queued record, stop the writer task and close the pool.

        While writes fail, keeps trying every ``flush_s`` for up to ``close_timeout_s``; then
        :class:`StoreUnavailableError` says how many records could not be written (they are
        lost).
        """
        if self._pool is None or self._stopping:
            return
        self._stopping = True
        self._pending.close()
        self._wake.set()
        if self._writer is not None:
            await asyncio.wait([self._writer])  # its failure, if any, was logged
        give_up = time.monotonic() + self._close_timeout_s
        while not await self._write():  # the server may be back within close_timeout_s
            if time.monotonic() >= give_up:
                break
            await asyncio.sleep(self._flush_s)
        await _close_pool(self._pool, self._timeout_s)
        left = len(self._pending)
        if left:
            raise StoreUnavailableError(f"ledger {self.url}: {left} records could not be written")

    # -- request records ---------------------------------------------------------------------

    def record(self, record: RequestRecord) -> None:
        """Queue ``record`` for the next group commit. Never blocks, never raises.

        May be called from any thread."""
        if self._pending.put(record) and len(self._pending) >= WAKE_AT:
            self._wake_writer()

    async def flush(self) -> None:
        """Commit every record queued so far.

        Raises :class:`StoreUnavailableError` when the write fails (the records stay queued).
        """
        if self._pool is None:
            if len(self._pending):
                raise StoreUnavailableError(f"ledger {self.url} is not open")
            return
        if not await self._write():
            raise StoreUnavailableError(f"ledger {self.url}: {len(self._pending)} records queued")

    @property
    def available(self) -> bool:
        return self.problem is None

    @property
    def problem(self) -> str | None:
        """Why the store is not available (None while it is)."""
        if self._writer is not None and self._writer.done() and not self._stopping:
            return "the group-commit task stopped"
        return self._writes.problem or self._reads.problem

    @property
    def stats(self) -> WriteStats:
        return self._pending.stats()

    async def spend(self, scope: Scope, since: float) -> float:
        column = SCOPE_COLUMNS[scope.kind]
        query = f"SELECT COALESCE(SUM(cost_usd), 0) FROM requests WHERE {column} = $1 AND at >= $2"
        total = await self._call("fetchval", query, scope.name, since)
        return float(total)

    async def requests(self, since: float, until: float) -> list[RequestRecord]:
        query = f"{SELECT_REQUESTS} WHERE at >= $1 AND at < $2 ORDER BY at, id"
        rows = await self._call("fetch", query, since, until)
        return [request_from_row(tuple(row)) for row in rows]

    # -- keys --------------------------------------------------------------------------------

    async def add_key(self, key: KeyRecord) -> None:
        try:
            await self._call("execute", INSERT_KEY, *key_row(key))
        except KeyConflictError as exc:
            raise KeyConflictError(f"key {key.key_id}: id or hash already stored") from exc

    async def revoke_key(self, key_id: str, at: float) -> bool:
        query = "UPDATE keys SET revoked_at = $1 WHERE key_id = $2 AND revoked_at IS NULL"
        status: str = await self._call("execute", query, at, key_id)
        return status != "UPDATE 0"

    async def list_keys(self) -> list[KeyRecord]:
        rows = await self._call("fetch", f"{SELECT_KEYS} ORDER BY created_at, key_id")
        return [key_from_row(tuple(row)) for row in rows]

    async def find_key(self, key_hash: str) -> KeyRecord | None:
        row = await self._call("fetchrow", f"{SELECT_KEYS} WHERE key_hash = $1", key_hash)
        return None if row is None else key_from_row(tuple(row))

    # -- internals ---------------------------------------------------------------------------

    async def _call(self, method: str, query: str, *args: Any) -> Any:
        """``pool.<method>(query, *args)``, failures translated to StoreUnavailableError."""
        if self._pool is None or self._stopping:
            raise StoreUnavailableError(f"ledger {self.url} is not open")
        try:
            result = await getattr(self._pool, method)(query, *args, timeout=self._timeout_s)
        except asyncpg.UniqueViolationError as exc:
            # The server answered: a conflict of the caller's, not an outage.
            raise KeyConflictError(str(exc)) from exc
        except DOWN as exc:
            self._reads.failed(exc)
            raise StoreUnavailableError(f"ledger {self.url}: {exc}") from exc
        self._reads.succeeded()
        return result

    def _wake_writer(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        try:
            while not self._stopping:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._flush_s):
                        await self._wake.wait()
                self._wake.clear()
                if not self._stopping:
                    await self._write()
        except Exception:
            # Not a database error: a bug. Say so loudly; ``available`` turns False.
            log.exception("ledger %s: the group-commit task stopped", self.url)
            raise

    async def _write(self) -> bool:
        """Commit every record queued when called, one COPY per BATCH_ROWS; False on failure."""
        async with self._write_lock:
            target = self._pending.accepted
            while self._pending.settled < target:
                batch = self._pending.peek(BATCH_ROWS)
                try:
                    refused = await self._copy(batch)
                except Exception as exc:  # noqa: BLE001 - any failure: keep queued, try again
                    # The records stay queued and the task keeps running: one that stopped
                    # would lose every record after them.
                    self._writes.failed(exc, trace=not isinstance(exc, DOWN))
                    return False
                self._writes.succeeded()
                self._pending.remove(len(batch), refused)
            return True

    async def _copy(self, batch: list[RequestRecord]) -> list[Exception]:
        """COPY ``batch`` in one transaction; when PostgreSQL or asyncpg refuses a record of
        it, each record in a transaction of its own, leaving out (and returning the errors of)
        those refused."""
        try:
            await self._copy_rows(batch)
        except Exception as exc:
            if not _refused(exc):
                raise
        else:
            return []
        refused = []
        for record in batch:  # rare, so a COPY per record is affordable
            try:
                await self._copy_rows([record])
            except Exception as exc:
                if not _refused(exc):
                    raise
                refused.append(exc)
        return refused

    async def _copy_rows(self, records: list[RequestRecord]) -> None:
        async with self._pool.acquire(timeout=self._timeout_s) as connection:
            await connection.copy_records_to_table(
                "requests",
                records=[request_row(record) for record in records],
                columns=REQUEST_COLUMNS,
                timeout=self._timeout_s,
            )


def _refused(error: Exception) -> bool:
    """Whether ``error`` is about the records written rather than the server: asyncpg could
    not encode a value (its ``DataError``, or an error of the conversion itself such as
    UnicodeEncodeError or OverflowError), or PostgreSQL rejected one as data (SQLSTATE class
    22, a NUL character say) or against a constraint (class 23)."""
    if isinstance(error, asyncpg.PostgresError):
        return isinstance(error, asyncpg.DataError | asyncpg.IntegrityConstraintViolationError)
    return isinstance(error, asyncpg.exceptions._base.DataError) or not isinstance(error, DOWN)


async def _close_pool(pool: Any, timeout_s: float) -> None:
    """Close ``pool`` gracefully, or at once when that takes longer than ``timeout_s``."""
    try:
        async with asyncio.timeout(timeout_s):
            await pool.close()
    except TimeoutError:
        pool.terminate()
