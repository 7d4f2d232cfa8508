"""Ledger write throughput for ``bench/governance.py``: the real SQLite and PostgreSQL stores.

One run of a store: N prepared request records go through ``store.record()`` (what the gateway
calls once per request, on its event loop), yielding to the loop every ``YIELD_EVERY`` calls as
a serving loop would between requests, then ``await store.flush()``. Wall time runs from the
first ``record()`` until ``flush()`` returns, so it includes every group commit. The caller's
side is timed too: each batch of ``YIELD_EVERY`` calls with ``perf_counter_ns``.

The stores are the gateway's own classes with their defaults (200 ms group-commit window,
commits of at most 5000 records), opened on a fresh file or database for each run.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import secrets
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import procs

from tiergate.ledger.records import RequestRecord
from tiergate.ledger.sqlite import SQLiteStore
from tiergate.ledger.store import LedgerStore

REPO_ROOT = Path(__file__).resolve().parent.parent
YIELD_EVERY = 100  # record() calls between two yields to the event loop
KEY_IDS = tuple(f"tk_{secrets.token_hex(5)}" for _ in range(8))


@dataclass
class StoreRun:
    """What one run of one store measured."""

    records: int
    wall_s: float
    record_loop_s: float  # the record() calls alone (yields excluded)
    record_batch_us: list[float]  # µs per record() call, per batch of YIELD_EVERY
    client_cpu_s: float  # this process: caller, writer thread or task, driver
    server_cpu_s: float | None  # the PostgreSQL server's process tree
    written: int
    dropped: int
    commits: int

    @property
    def records_per_s(self) -> float:
        return self.records / self.wall_s if self.wall_s else 0.0

    @property
    def record_us_median(self) -> float:
        return statistics.median(self.record_batch_us)

    @property
    def record_us_mean(self) -> float:
        return 1e6 * self.record_loop_s / self.records

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        del out["record_batch_us"]
        out |= {
            "records_per_s": self.records_per_s,
            "record_us_median_batch": self.record_us_median,
            "record_us_mean": self.record_us_mean,
        }
        return out


def make_records(count: int) -> list[RequestRecord]:
    """``count`` records shaped like the gateway's (a served non-streamed request each)."""
    start = time.time()
    return [
        RequestRecord(
            at=start + i * 1e-4,
            request_id=secrets.token_hex(8),
            key_id=KEY_IDS[i % len(KEY_IDS)],
            team="bench",
            project="bench",
            stage=None,
            model="bench-tier",
            tier="bench-tier",
            attempts=1,
            fallbacks="",
            input_tokens=20,
            output_tokens=16,
            cached_tokens=0,
            cache_write_tokens=0,
            cost_usd=3.6e-5,
            latency_s=0.0012,
            ttft_s=None,
            status=200,
            error=None,
        )
        for i in range(count)
    ]


async def _drive(
    store: LedgerStore, records: list[RequestRecord], server_pid: int | None
) -> StoreRun:
    await store.open()
    try:
        batches: list[float] = []
        loop_ns = 0
        server_before = procs.cpu_seconds(server_pid) if server_pid else 0.0
        cpu_before = time.process_time()
        started = time.perf_counter()
        for offset in range(0, len(records), YIELD_EVERY):
            batch = records[offset : offset + YIELD_EVERY]
            t0 = time.perf_counter_ns()
            for record in batch:
                store.record(record)
            spent = time.perf_counter_ns() - t0
            loop_ns += spent
            batches.append(spent / 1e3 / len(batch))
            await asyncio.sleep(0)
        await store.flush()
        wall = time.perf_counter() - started
        client_cpu = time.process_time() - cpu_before
        server_cpu = procs.cpu_seconds(server_pid) - server_before if server_pid else None
        stats = store.stats  # type: ignore[attr-defined]  # both SQL stores have it
    finally:
        await store.close()
    return StoreRun(
        records=len(records),
        wall_s=wall,
        record_loop_s=loop_ns / 1e9,
        record_batch_us=batches,
        client_cpu_s=client_cpu,
        server_cpu_s=server_cpu,
        written=stats.written,
        dropped=stats.dropped,
        commits=stats.commits,
    )


def run_sqlite(directory: Path, records: list[RequestRecord], run: int) -> StoreRun:
    """One run into a fresh SQLite file in ``directory``."""
    path = directory / f"ledger-{run}.db"
    store = SQLiteStore(path, queue_limit=max(100_000, len(records)))
    return asyncio.run(_drive(store, records, None))


def run_postgres(dsn: str, records: list[RequestRecord], server_pid: int) -> StoreRun:
    """One run into the (fresh) database ``dsn``."""
    from tiergate.ledger.postgres import PostgresStore  # noqa: PLC0415 - asyncpg is optional

    store = PostgresStore(dsn, queue_limit=max(100_000, len(records)))
    return asyncio.run(_drive(store, records, server_pid))


def services() -> ModuleType:
    """``tests/services.py`` (throwaway PostgreSQL and Redis), imported from the repo root."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    return importlib.import_module("tests.services")


class ServiceUnavailableError(RuntimeError):
    """A throwaway server could not be started; the message says why (and how to fix it)."""


def start_service(starter: str, cpu: int) -> Any:
    """``tests.services.<starter>()`` (start_postgres or start_redis), pinned to ``cpu``."""
    try:
        svc = services()
    except ImportError as exc:
        raise ServiceUnavailableError(f"tests/services.py needs {exc.name}: make setup") from exc
    try:
        server = getattr(svc, starter)()
    except (
        svc.ServiceMissingError,
        svc.ServiceStartError,
        OSError,
        subprocess.SubprocessError,
    ) as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ServiceUnavailableError(f"{type(exc).__name__}: {first}") from exc
    pin_tree(server.process.pid, cpu)
    return server


def pin_tree(pid: int, cpu: int) -> None:
    """Pin a process tree (a server and the workers it forked so far) to one CPU; processes it
    forks later inherit the pinning."""
    for member in procs.process_tree(pid):
        # Gone meanwhile, or not ours to pin: it just stays unpinned.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.sched_setaffinity(member, {cpu})


def postgres_version(bindir: Path) -> str:
    done = subprocess.run(
        [str(bindir / "postgres"), "--version"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    words = done.stdout.split()  # postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)
    return f"PostgreSQL {words[2]}" if len(words) > 2 else "PostgreSQL (version unknown)"


def redis_version() -> str:
    done = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    words = done.stdout.split()
    version = next((w for w in words if w.startswith("v=")), "v=unknown")
    return f"redis-server {version[2:]}"


def bench_ledgers(
    records: list[RequestRecord],
    rounds: int,
    *,
    cpu: int,
    server_cpu: int,
    workdir: Path,
    postgres: bool,
) -> dict[str, Any]:
    """SQLite and PostgreSQL runs, interleaved (a change in load falls on both alike).

    This process runs on ``cpu``; the PostgreSQL server on ``server_cpu``. Returns the runs
    per store, the versions, and why PostgreSQL was left out when it was.
    """
    out: dict[str, Any] = {"sqlite": [], "postgres": [], "postgres_skipped": None}
    server = None
    if postgres:
        try:
            server = start_service("start_postgres", server_cpu)
            out["postgres_version"] = postgres_version(server.bindir)
        except ServiceUnavailableError as exc:
            out["postgres_skipped"] = str(exc)
    else:
        out["postgres_skipped"] = "--no-postgres"
    os.sched_setaffinity(0, {cpu})
    try:
        for run in range(rounds):
            print(
                f"  ledger round {run + 1}/{rounds}: sqlite ...",
                end="",
                flush=True,
                file=sys.stderr,
            )
            sqlite_run = run_sqlite(workdir, records, run)
            out["sqlite"].append(sqlite_run)
            print(f" {sqlite_run.records_per_s:,.0f}/s", end="", file=sys.stderr)
            if server is not None:
                print(", postgresql ...", end="", flush=True, file=sys.stderr)
                database = f"bench{run}"
                server.create_database(database)
                pg_run = run_postgres(server.dsn(database), records, server.process.pid)
                out["postgres"].append(pg_run)
                print(f" {pg_run.records_per_s:,.0f}/s", end="", file=sys.stderr)
            print(file=sys.stderr)
    finally:
        if server is not None:
            server.stop()
    return out
