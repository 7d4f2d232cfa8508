"""A throwaway PostgreSQL cluster for the ledger tests: ``initdb`` into a temporary directory,
``postgres`` on 127.0.0.1 at a free port, durability off. It can be stopped and started again
on the same port and data (the outage tests need that).

PostgreSQL refuses to run as root: as root (CI, containers) the server runs as the ``postgres``
user of Debian's package (else ``nobody``), switched by ``subprocess`` itself so that the
process we signal is the server.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

INSTALL = "apt-get install -y postgresql"


def find_bindir() -> Path | None:
    """Where ``initdb`` and ``postgres`` are: $TIERGATE_PG_BIN, PATH, or Debian's newest."""
    candidates: list[Path] = []
    if os.environ.get("TIERGATE_PG_BIN"):
        candidates.append(Path(os.environ["TIERGATE_PG_BIN"]))
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path.parent.name))

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for path in candidates:
        if all((path / tool).is_file() for tool in ("initdb", "postgres", "pg_isready", "psql")):
            return path
    return None


def _account() -> dict[str, Any]:
    if os.geteuid() != 0:
        return {}
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    raise RuntimeError("running as root and no 'postgres' or 'nobody' user to run PostgreSQL")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Cluster:
    """One PostgreSQL cluster; superuser ``postgres``, trust authentication."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.directory = Path(tempfile.mkdtemp(prefix="tiergate-ledger-pg-"))
        self.port = _free_port()
        self.log = self.directory / "server.log"
        self._account = _account()
        self._env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
        self._process: subprocess.Popen[bytes] | None = None
        self.log.touch()
        if self._account:
            for path in (self.directory, self.log):
                os.chown(path, self._account["user"], self._account["group"])
        initdb = [str(bindir / "initdb"), "-D", str(self.directory / "data"), "-U", "postgres"]
        initdb += ["--auth=trust", "--no-locale", "--encoding=UTF8", "--no-sync"]
        status = self._spawn(initdb).wait(timeout=60)
        if status != 0:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise RuntimeError(f"initdb exited with status {status}")

    def _spawn(self, args: list[str]) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as out:
            return subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                env=self._env,
                **self._account,
            )

    def start(self, timeout_s: float = 30.0) -> None:
        args = [str(self.bindir / "postgres"), "-D", str(self.directory / "data")]
        args += ["-h", "127.0.0.1", "-p", str(self.port), "-k", str(self.directory)]
        args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        self._process = process = self._spawn(args)
        isready = [str(self.bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"postgres exited ({process.returncode}):\n{self._tail()}")
            if subprocess.run([*isready, "-t", "1"], timeout=5, check=False).returncode == 0:
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"postgres not ready within {timeout_s} s:\n{self._tail()}")

    def stop(self, timeout_s: float = 20.0) -> None:
        """Fast shutdown (SIGINT: clients are disconnected), SIGKILL after ``timeout_s``."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
        process.wait(timeout=timeout_s)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str) -> str:
        """Run one statement as the superuser with psql; its output, unaligned."""
        args = [str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        args += ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres"]
        done = subprocess.run(
            [*args, "-c", statement], capture_output=True, timeout=30, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql {statement!r}: {done.stderr.decode(errors='replace')}")
        return done.stdout.decode().strip()

    def _tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
