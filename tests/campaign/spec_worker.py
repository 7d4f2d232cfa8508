"""A child process that loads fleet specs for the spec campaign, bounded in time and memory.

A hostile spec may make the loader run for ever or eat all memory (an alias bomb); in a child
with an address-space limit that shows as a failure of one example instead of a hung or killed
test run. ``SpecLoader.load(data)`` writes ``data`` to a file, runs ``load_fleet`` on it in the
child and returns an :class:`Outcome`; a child that does not answer within ``timeout_s`` is
killed and replaced.
"""

from __future__ import annotations

import multiprocessing
import resource
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

# The child's address-space limit: far above what any real spec needs.
MEMORY_LIMIT_BYTES = 1 << 30
ENV = {"TIERGATE_MASTER_KEY": "campaign-master-key-0123456789"}


@dataclass(frozen=True)
class Outcome:
    """``fleet`` (it loaded), ``spec_error`` (with its issues) or ``other`` (with the
    exception and the innermost frames); ``message`` is what ``str(exception)`` said."""

    kind: str
    message: str = ""
    issues: tuple[tuple[str, int, int, str, str], ...] = ()
    where: str = ""


def _serve(connection: Connection) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    from tiergate.errors import SpecError  # noqa: PLC0415 - imported in the child
    from tiergate.spec import load_fleet  # noqa: PLC0415

    while True:
        path = connection.recv()
        try:
            load_fleet(path, env=ENV)
            outcome = Outcome("fleet")
        except SpecError as exc:
            issues = tuple((i.file, i.line, i.column, i.path, i.message) for i in exc.issues)
            outcome = Outcome("spec_error", str(exc)[:2000], issues)
        except BaseException as exc:  # noqa: BLE001 - anything else is what the campaign reports
            frames = traceback.extract_tb(exc.__traceback__)
            ours = [f for f in frames if "/tiergate/" in f.filename] or frames
            where = f"{ours[-1].filename}:{ours[-1].lineno} ({ours[-1].name})" if ours else ""
            outcome = Outcome("other", f"{type(exc).__name__}: {str(exc)[:300]}", where=where)
        connection.send(outcome)


class SpecLoader:
    """``load_fleet`` in a child process, one spec at a time."""

    def __init__(self, directory: Path, timeout_s: float = 10.0) -> None:
        self._directory = directory
        self._timeout_s = timeout_s
        self._context = multiprocessing.get_context("spawn")
        self._process: multiprocessing.process.BaseProcess | None = None
        self._connection: Connection | None = None
        self._count = 0

    def load(self, data: bytes, name: str = "fleet.yaml") -> tuple[Outcome, str]:
        """Load ``data`` as a spec file; the outcome and the file's path (named in messages)."""
        self._count += 1
        path = self._directory / f"{self._count}-{name}"
        path.write_bytes(data)
        connection = self._start()
        connection.send(str(path))
        if connection.poll(self._timeout_s):
            try:
                return connection.recv(), str(path)
            except EOFError:
                self.close()
                return Outcome("other", "the loader process died (memory limit?)"), str(path)
        self.close()
        return Outcome("other", f"load_fleet did not return within {self._timeout_s:.0f} s"), str(
            path
        )

    def _start(self) -> Connection:
        if self._connection is None or self._process is None or not self._process.is_alive():
            self.close()
            ours, theirs = self._context.Pipe()
            self._process = self._context.Process(target=_serve, args=(theirs,), daemon=True)
            self._process.start()
            theirs.close()
            self._connection = ours
        return self._connection

    def close(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join(10)
            self._process = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None
