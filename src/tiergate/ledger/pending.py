"""What the SQL stores share around their one writer: the bounded queue of records waiting for
the next group commit, and the health of writes and reads (one log line per outage).

The writer ``peek``s a batch, writes it in one transaction and only then ``remove``s it, so a
failed write leaves every record queued, in order, for the next try. A record that the store
refuses by itself (a value it cannot encode, such as a lone surrogate or an integer past 64
bits) is left out of the transaction and counted as dropped when the others are committed:
one bad record never holds up or stops the writing of the others. One log line per kind of
refusal, however many records it drops.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from tiergate.ledger.records import RequestRecord

log = logging.getLogger("tiergate.ledger")


@dataclass(frozen=True, slots=True)
class WriteStats:
    """Counters of one store since it was opened."""

    queued: int  # waiting for a group commit now
    written: int  # committed
    dropped: int  # refused: the queue was full, or the store closed
    commits: int  # group commits (transactions) that wrote records


class PendingRecords:
    """Records accepted by ``record()`` and not yet committed: a bounded FIFO, thread-safe.

    ``put`` never blocks and never raises: with ``limit`` records waiting, or once closed, it
    drops the record and counts it, logging one line when dropping starts and one when it ends.
    """

    def __init__(self, limit: int, store: str) -> None:
        if limit < 1:
            raise ValueError(f"queue limit must be at least 1, got {limit}")
        self._limit = limit
        self._store = store
        self._lock = threading.Lock()
        self._records: deque[RequestRecord] = deque()
        self._closed = False
        self._dropping = 0  # dropped since dropping last started; 0 while not dropping
        self._refusals_logged: set[type[BaseException]] = set()
        self.accepted = 0
        self.written = 0
        self.settled = 0  # records that left the queue: written, or refused by the store
        self.dropped = 0
        self.commits = 0

    def __len__(self) -> int:
        return len(self._records)

    def put(self, record: RequestRecord) -> bool:
        """Queue ``record``; False when it was dropped."""
        with self._lock:
            if not self._closed and len(self._records) < self._limit:
                self._records.append(record)
                self.accepted += 1
                return True
            self.dropped += 1
            self._dropping += 1
            first = self._dropping == 1
            closed = self._closed
        if first:
            why = "the store is closed" if closed else f"{self._limit} records already wait"
            log.error("ledger %s: dropping records: %s", self._store, why)
        return False

    def peek(self, count: int) -> list[RequestRecord]:
        """The ``count`` oldest records, left in the queue."""
        with self._lock:
            return list(itertools.islice(self._records, count))

    def remove(self, count: int, refused: Sequence[BaseException] = ()) -> None:
        """The ``count`` oldest records left the queue in one transaction: committed, except
        for those the store refused, one error each in ``refused`` (they are dropped)."""
        with self._lock:
            for _ in range(count):
                self._records.popleft()
            self.written += count - len(refused)
            self.settled += count
            self.dropped += len(refused)
            self.commits += 1
            dropped, self._dropping = self._dropping, 0
            first = [e for e in refused if type(e) not in self._refusals_logged]
            self._refusals_logged.update(type(e) for e in first)
        for error in {type(e): e for e in first}.values():
            log.error(
                "ledger %s: dropping records the store cannot hold (%s: %s); the others are "
                "written, and later records refused for this reason are dropped without a "
                "log line (tiergate_ledger_dropped_records_total counts them)",
                self._store,
                type(error).__name__,
                error,
            )
        if dropped and not self._closed:
            log.warning("ledger %s: queue has room again; %d records dropped", self._store, dropped)

    def close(self) -> None:
        """Accept no more records (those queued stay for the last write)."""
        with self._lock:
            self._closed = True
            self._dropping = 0

    def stats(self) -> WriteStats:
        with self._lock:
            return WriteStats(len(self._records), self.written, self.dropped, self.commits)


class Health:
    """Whether writes (or reads) of a store work; one log line when failures start, one when
    they end, however many attempts fail in between."""

    def __init__(self, store: str, what: str) -> None:
        self._store = store
        self._what = what
        self.ok = True
        self.problem: str | None = None  # while failing: what fails, and the error's type
        self._failures = 0

    def failed(self, error: BaseException, *, trace: bool = False) -> None:
        """One attempt failed; ``trace``: log the traceback too (an error that is a bug)."""
        self._failures += 1
        if self.ok:
            # Only the error's type: ``problem`` is shown unauthenticated (``/ready``).
            self.problem = f"{self._what} failing ({type(error).__name__})"
            self.ok = False
            log.error(
                "ledger %s: %s failing: %s: %s",
                self._store,
                self._what,
                type(error).__name__,
                error,
                exc_info=error if trace else None,
            )

    def succeeded(self) -> None:
        if not self.ok:
            # The line before the flag: whoever sees ``ok`` again also finds the line logged.
            log.warning(
                "ledger %s: %s working again after %d failed attempts",
                self._store,
                self._what,
                self._failures,
            )
            self._failures = 0
            self.problem = None
            self.ok = True
