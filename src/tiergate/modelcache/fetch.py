"""``fetch``: one source into one DEST, verified, atomically completed, one fetcher at a time.

    lock DEST ─ marker of this plan? ─ yes ─▶ (re-hash with verify_all) ─▶ done, nothing moved
                     │ no
    unmark ─ reuse installed files ─ check space ─ transfer into staging ─ sha256 each file
         ─ mismatch: drop it, transfer again (max_repairs) ─ safetensors check
         ─ rename into place ─ marker last

Whatever fails, DEST is left unmarked, so the next run (or the next pod) starts over from what
is staged and installed, never from a model that only looks complete.
"""

from __future__ import annotations

import asyncio
import errno
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tiergate.modelcache import cache
from tiergate.modelcache.errors import SourceError, SpaceError, VerifyError
from tiergate.modelcache.lock import exclusive_lock
from tiergate.modelcache.plan import FileEntry, Plan
from tiergate.modelcache.progress import NullProgress, Progress
from tiergate.modelcache.safetensors import check_model
from tiergate.modelcache.select import check_space, select
from tiergate.modelcache.sources.base import Source
from tiergate.modelcache.transfer import TransferSettings, retrying, transfer
from tiergate.modelcache.verify import FollowingHashes, sha256_files

MB = 1_000_000


@dataclass(frozen=True, slots=True)
class FetchSummary:
    """What a fetch did. ``status``: ``fetched`` (bytes moved), ``cached`` (DEST was complete
    already) or ``repaired`` (``verify_all`` found corrupt files and fetched them again)."""

    status: str
    source: str
    dest: str
    digest: str
    files: int
    bytes: int
    bytes_transferred: int = 0
    seconds: float = 0.0
    retries: int = 0
    repairs: int = 0
    files_verified: int = 0
    waited_for_lock: bool = False
    note: str = ""
    repaired_files: tuple[str, ...] = field(default=())

    @property
    def mb_per_s(self) -> float:
        return self.bytes_transferred / MB / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "mb_per_s": round(self.mb_per_s, 1)}


@dataclass(slots=True)
class _Run:
    """The counters of one fetch, turned into its summary at the end."""

    started: float = field(default_factory=time.monotonic)
    transferred: int = 0
    retries: int = 0
    repairs: int = 0
    verified: int = 0
    repaired_files: list[str] = field(default_factory=list)


async def fetch(
    source: Source,
    dest: Path,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    settings: TransferSettings | None = None,
    verify_all: bool = False,
    max_repairs: int = 2,
    progress: Progress | None = None,
    lock_timeout_s: float | None = None,
    trust_marker: bool = False,
    hash_parallel: int = 4,
) -> FetchSummary:
    """Make ``dest`` a complete, verified copy of the selected files of ``source``.

    A DEST whose marker records this plan returns at once (after re-hashing every file when
    ``verify_all``; corrupt ones are fetched again). Deciding that needs the source's listing
    (the plan digest); ``trust_marker`` skips even that when the marker was written for the
    same source URL and globs, so that a restart needs no network. Raises the
    :mod:`~tiergate.modelcache.errors` exceptions, and ``LockTimeoutError`` when another
    fetcher holds DEST longer than ``lock_timeout_s``."""
    progress = progress or NullProgress()
    settings = settings or TransferSettings()
    dest = await asyncio.to_thread(dest.absolute)
    await asyncio.to_thread(dest.mkdir, parents=True, exist_ok=True)
    run = _Run()
    async with exclusive_lock(dest, timeout_s=lock_timeout_s) as waited:
        fetcher = _Fetcher(
            source, dest, tuple(include), tuple(exclude), settings, progress, hash_parallel, run
        )
        summary = await fetcher.run(verify_all, max_repairs, trust_marker)
    seconds = time.monotonic() - run.started
    return FetchSummary(
        status=summary.status,
        source=source.url,
        dest=str(dest),
        digest=summary.digest,
        files=summary.files,
        bytes=summary.bytes,
        bytes_transferred=run.transferred,
        seconds=round(seconds, 3),
        retries=run.retries,
        repairs=run.repairs,
        files_verified=run.verified,
        waited_for_lock=waited,
        note=summary.note,
        repaired_files=tuple(run.repaired_files),
    )


@dataclass(frozen=True, slots=True)
class _Outcome:
    status: str
    digest: str
    files: int
    bytes: int
    note: str = ""


@dataclass(slots=True)
class _Fetcher:
    """The steps of one fetch, under DEST's lock."""

    source: Source
    dest: Path
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    settings: TransferSettings
    progress: Progress
    hash_parallel: int
    run_state: _Run

    @property
    def staging(self) -> Path:
        return self.dest / cache.STAGING_NAME

    async def run(self, verify_all: bool, max_repairs: int, trust_marker: bool) -> _Outcome:
        marker = cache.read_marker(self.dest)
        good: dict[str, str] | None = None  # installed files known intact, when re-hashed
        if (
            marker is not None
            and trust_marker
            and marker.selects(self.source.url, self.include, self.exclude)
            and all(cache.installed_size_ok(self.dest, item) for item in marker.files)
        ):
            if verify_all:
                good = await self._verify_installed(marker)
            if good is None or len(good) == len(marker.files):
                note = "marker trusted, source not listed" + (", files re-hashed" * verify_all)
                return _Outcome("cached", marker.digest, len(marker.files), marker.bytes, note)
        # A listing is many requests (a HEAD per S3 object, say): retried as reads are.
        listed = await retrying(
            self.source.list_files, self.settings, random.Random(), on_retry=self._count_retry
        )
        plan = Plan(self.source.url, tuple(sorted(listed, key=lambda entry: entry.path)))
        plan = select(plan, self.include, self.exclude)
        if not plan.files:
            what = "no files" if not listed else "no files match the include/exclude globs"
            raise SourceError(f"{self.source.url}: {what}")
        same_plan = marker is not None and marker.digest == plan.digest
        whole = all(cache.installed_size_ok(self.dest, entry) for entry in plan.files)
        if marker is not None and same_plan and good is None and whole:
            if not verify_all:
                return _Outcome("cached", plan.digest, len(plan.files), plan.total_bytes)
            good = await self._verify_installed(marker)
            if len(good) == len(plan.files):
                note = "files re-hashed"
                return _Outcome("cached", plan.digest, len(plan.files), plan.total_bytes, note)
        cache.remove_marker(self.dest)
        fetched = await self._complete(plan, good if same_plan else None, max_repairs)
        if same_plan:
            self.run_state.repaired_files.extend(fetched)
        status = "repaired" if same_plan else "fetched"
        return _Outcome(status, plan.digest, len(plan.files), plan.total_bytes)

    def _count_retry(self) -> None:
        self.run_state.retries += 1

    async def _verify_installed(self, marker: cache.Marker) -> dict[str, str]:
        """The marker's files whose sha256 in DEST is still the recorded one."""
        self.progress.phase("verify", marker.bytes)
        paths = {item.path: self.dest / item.path for item in marker.files}
        actual = await sha256_files(
            paths, parallel=self.hash_parallel, on_progress=self.progress.advance
        )
        self.run_state.verified += len(actual)
        return {item.path: item.sha256 for item in marker.files if actual[item.path] == item.sha256}

    async def _reusable(self, plan: Plan) -> dict[str, str]:
        """Files already installed (a crash during install, a plan that changed a few files)
        whose size and published sha256 match: they need no transfer."""
        candidates = [
            entry
            for entry in plan.files
            if entry.sha256 is not None and cache.installed_size_ok(self.dest, entry)
        ]
        if not candidates:
            return {}
        paths = {entry.path: self.dest / entry.path for entry in candidates}
        actual = await sha256_files(paths, parallel=self.hash_parallel)
        self.run_state.verified += len(actual)
        return {e.path: actual[e.path] for e in candidates if e.sha256 == actual[e.path]}

    async def _complete(
        self, plan: Plan, good: dict[str, str] | None, max_repairs: int
    ) -> list[str]:
        """Fetch what DEST lacks of ``plan`` (``good``: installed files known intact, else
        found by hashing), check it, install it and mark DEST complete; return the paths
        fetched."""
        hashes = dict(good) if good is not None else await self._reusable(plan)
        installed = set(hashes)
        todo = Plan(plan.source, tuple(e for e in plan.files if e.path not in installed))
        try:
            for entry in todo.files:  # stale or corrupt copies: free their room first
                (self.dest / entry.path).unlink(missing_ok=True)
            check_space(self.dest, todo, cache.staged_bytes(self.staging, todo.files))
            self.staging.mkdir(exist_ok=True)
            hashes.update(await self._transfer_verified(todo, max_repairs))
            where = {
                entry.path: (self.dest if entry.path in installed else self.staging) / entry.path
                for entry in plan.files
            }
            check_model(where)
            cache.install(self.staging, self.dest, [entry.path for entry in todo.files])
            marker = cache.Marker.for_plan(plan, hashes, self.include, self.exclude)
            cache.write_marker(self.dest, marker)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise SpaceError(f"{self.dest}: no space left on device: {exc}") from exc
            raise
        cache.clear_staging(self.dest)
        return [entry.path for entry in todo.files]

    async def _transfer_verified(self, todo: Plan, max_repairs: int) -> dict[str, str]:
        """Transfer ``todo`` into staging and hash it; a file of the wrong size or hash is
        dropped and transferred again, at most ``max_repairs`` times."""
        hashes: dict[str, str] = {}
        pending = todo
        for attempt in range(max_repairs + 1):
            self.progress.phase("download", pending.total_bytes)
            # Each file is hashed as its chunks land, in order, while the rest downloads.
            early = FollowingHashes(self.staging, self.hash_parallel)
            try:
                stats = await transfer(
                    self.source,
                    pending,
                    self.staging,
                    self.settings,
                    self.progress.advance,
                    on_chunk_done=early.chunk_done,
                )
                self.run_state.transferred += stats.bytes_fetched
                self.run_state.retries += stats.retries
                actual = await early.results()
            finally:
                await early.close()
            rest = [entry for entry in pending.files if entry.path not in actual]
            self.progress.phase("verify", sum(entry.size for entry in rest))
            paths = {entry.path: self.staging / entry.path for entry in rest}
            actual |= await sha256_files(
                paths, parallel=self.hash_parallel, on_progress=self.progress.advance
            )
            self.run_state.verified += len(actual)
            bad: list[tuple[FileEntry, str]] = []
            for entry in pending.files:
                size = (self.staging / entry.path).stat().st_size
                if size != entry.size:
                    bad.append((entry, f"size mismatch: expected {entry.size} bytes, got {size}"))
                elif entry.sha256 is not None and actual[entry.path] != entry.sha256:
                    mismatch = f"expected {entry.sha256}, actual {actual[entry.path]}"
                    bad.append((entry, f"sha256 mismatch: {mismatch}"))
                else:
                    hashes[entry.path] = actual[entry.path]
            if not bad:
                return hashes
            if attempt == max_repairs:
                first, problem = bad[0]
                more = f" (and {len(bad) - 1} more files)" if len(bad) > 1 else ""
                raise VerifyError(f"{first.path}: {problem} after {max_repairs} re-downloads{more}")
            for entry, _ in bad:
                (self.staging / entry.path).unlink(missing_ok=True)
            self.run_state.repairs += len(bad)
            pending = Plan(todo.source, tuple(entry for entry, _ in bad))
        raise AssertionError("unreachable")
