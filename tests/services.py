"""Throwaway PostgreSQL and Redis servers for the tests, on 127.0.0.1 at free ports.

``start_postgres`` runs ``initdb`` (trust auth, superuser ``postgres``) into a fresh temporary
directory and starts ``postgres`` on a free port, with its unix socket in that directory and
durability switched off (``fsync=off``): the data is thrown away anyway. Its ``stop`` shuts the
server down and keeps the data, so that ``start`` starts it again on the same data and port (a
database outage, as a test sees it); ``remove`` stops it and deletes its directory, and every
server not removed by then is removed when the interpreter exits. ``sql`` runs a statement with
``psql``. ``start_redis`` starts ``redis-server`` with persistence off, its working directory in
a temporary directory; its ``stop`` shuts it down and removes that directory.

Both wait, within a bound, until the server answers. Stopping is a polite signal, then SIGKILL
after a bound. A missing binary raises ``ServiceMissingError`` whose message is the apt command
that installs it; ``missing`` turns that into a skip, or a failure when ``CI`` is set.

PostgreSQL refuses to run as root. When the tests run as root (CI, containers) the server runs
as the ``postgres`` user that the Debian ``postgresql`` package creates (else ``nobody``):
``subprocess`` switches user itself (``user=``/``group=``), so the process we signal is the
server itself and no ``su``/``runuser`` wrapper sits between us.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import pytest

POSTGRES_APT = "apt-get install -y postgresql"
REDIS_APT = "apt-get install -y redis-server"


class ServiceMissingError(Exception):
    """A server binary or module the tests need is not installed; the message says how to."""


class ServiceStartError(Exception):
    """A server was found but did not come up; the message ends with the tail of its log."""


def missing(message: str) -> NoReturn:
    """Skip the current test for want of something installed; under CI, fail it instead."""
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: every test must run)")
    pytest.skip(message)


def optional_module(name: str, extra: str) -> ModuleType:
    """Import a module of one of tiergate's extras, or ``missing`` (at module level too)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        hint = f"pip install -e '.[{extra}]'"
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed: {hint} (CI is set: every test must run)")
        pytest.skip(f"{name} is not installed: {hint}", allow_module_level=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _stop_process(process: subprocess.Popen[bytes], sig: int, timeout_s: float) -> None:
    """Send ``sig``; SIGKILL if the process is still there after ``timeout_s``; reap it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait(timeout=timeout_s)


def _start(args: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, **kwargs
        )


def _wait_until(
    ready: Callable[[], bool],
    process: subprocess.Popen[bytes],
    log: Path,
    what: str,
    timeout_s: float,
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceStartError(
                f"{what} exited with status {process.returncode}:\n{_log_tail(log)}"
            )
        if ready():
            return
        time.sleep(0.05)
    raise ServiceStartError(f"{what} not ready within {timeout_s} s:\n{_log_tail(log)}")


# --- PostgreSQL ---------------------------------------------------------------------------

POSTGRES_TOOLS = ("initdb", "postgres", "pg_isready", "psql")


def postgres_bindir(debian_root: Path = Path("/usr/lib/postgresql")) -> Path:
    """Where ``initdb``, ``postgres``, ``pg_isready`` and ``psql`` all are: the directory of the
    ``initdb`` on PATH, else Debian's newest versioned directory that has them."""

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))

    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path is not None:
        candidates.append(Path(on_path).resolve().parent)
    candidates += sorted(debian_root.glob("*/bin"), key=version, reverse=True)
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in POSTGRES_TOOLS):
            return bindir
    raise ServiceMissingError(f"PostgreSQL server is not installed: {POSTGRES_APT}")


def _postgres_account() -> dict[str, Any]:
    """Popen arguments that run the server as a non-root user when we are root: ``postgres``
    (Debian's package creates it), else ``nobody``."""
    if os.geteuid() != 0:
        return {}
    for name in ("postgres", "nobody"):
        try:
            account = pwd.getpwnam(name)
        except KeyError:
            continue
        return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    raise ServiceMissingError(
        f"running as root, PostgreSQL needs the 'postgres' user: {POSTGRES_APT}"
    )


def _postgres_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": "/tmp"}


@dataclass(eq=False)  # one server is one cluster: compared and hashed by identity
class PostgresServer:
    """A throwaway cluster; superuser ``postgres``, trust authentication.

    ``stop`` shuts the server down and keeps its data; ``start`` starts it again on the same
    data and port (an outage, as a test sees it). ``remove`` stops it for good and deletes its
    directory; a server not removed by then is removed when the interpreter exits.
    """

    port: int
    directory: Path
    bindir: Path
    process: subprocess.Popen[bytes] | None = None
    account: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def socket_dir(self) -> Path:
        return self.directory

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the server on its data and port (nothing to do while it runs); wait until it
        accepts connections."""
        if self.running:
            return
        args = [str(self.bindir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        args += ["-c", "listen_addresses=127.0.0.1"]
        args += ["-c", f"unix_socket_directories={self.directory}"]
        args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        self.process = process = _start(
            args, self.log, cwd=self.directory, env=_postgres_env(), **self.account
        )
        isready = [str(self.bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]

        def ready() -> bool:
            probe = subprocess.run([*isready, "-t", "2"], timeout=5, check=False)
            return probe.returncode == 0

        try:
            _wait_until(ready, process, self.log, "postgres", timeout_s)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout_s: float = 20.0) -> None:
        """Shut the server down, keeping its data (``start`` starts it again)."""
        if self.process is not None:
            # SIGINT is PostgreSQL's "fast" shutdown: it disconnects clients instead of waiting.
            _stop_process(self.process, signal.SIGINT, timeout_s)

    def remove(self, timeout_s: float = 20.0) -> None:
        """Stop the server and delete its directory, data and log with it."""
        _live_postgres.discard(self)
        self.stop(timeout_s)
        # Best effort: a leftover temporary directory must not fail the test session.
        shutil.rmtree(self.directory, ignore_errors=True)

    def sql(self, statement: str, database: str = "postgres", timeout_s: float = 30.0) -> str:
        """Run one statement as the superuser with ``psql`` (no Python driver needed); its
        output, unaligned and without headers (``"10"`` for ``SELECT count(*) …``)."""
        args = [str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        args += ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database]
        result = subprocess.run(
            [*args, "-c", statement], capture_output=True, timeout=timeout_s, check=False
        )
        if result.returncode != 0:
            raise ServiceStartError(f"psql {statement!r}: {result.stderr.decode(errors='replace')}")
        return result.stdout.decode(errors="replace").strip()

    def execute(self, statement: str, timeout_s: float = 30.0) -> None:
        """``sql`` for a statement whose output does not matter."""
        self.sql(statement, timeout_s=timeout_s)

    def create_database(self, name: str) -> None:
        self.execute(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        # FORCE: a connection the test left open must not keep its database alive.
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_live_postgres: set[PostgresServer] = set()


@atexit.register
def _remove_live_postgres() -> None:
    """A server its user stopped (or forgot) without ``remove``: no process, no directory left."""
    for server in list(_live_postgres):
        server.remove()


def start_postgres(timeout_s: float = 60.0) -> PostgresServer:
    """initdb into a new temporary directory and start the server on a free port; wait until
    it accepts connections. ``remove`` it when done."""
    bindir = postgres_bindir()
    account = _postgres_account()
    directory = Path(tempfile.mkdtemp(prefix="tiergate-pg-"))
    server = PostgresServer(port=free_port(), directory=directory, bindir=bindir, account=account)
    _live_postgres.add(server)
    try:
        server.log.touch()
        if account:
            for path in (directory, server.log):
                os.chown(path, account["user"], account["group"])
        initdb = [str(bindir / "initdb"), "-D", str(server.data_dir), "-U", "postgres"]
        initdb += ["--auth=trust", "--no-locale", "--encoding=UTF8", "--no-sync"]
        initializing = _start(initdb, server.log, cwd=directory, env=_postgres_env(), **account)
        try:
            status = initializing.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _stop_process(initializing, signal.SIGKILL, timeout_s)
            raise ServiceStartError(
                f"initdb not done within {timeout_s} s:\n{_log_tail(server.log)}"
            ) from None
        if status != 0:
            raise ServiceStartError(f"initdb exited with status {status}:\n{_log_tail(server.log)}")
        server.start(timeout_s)
    except BaseException:
        server.remove()
        raise
    return server


# --- Redis --------------------------------------------------------------------------------


def redis_command(port: int, *words: str, timeout_s: float = 5.0) -> bytes:
    """Send one command to Redis on 127.0.0.1 and return its first reply line (RESP)."""
    parts = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(b"".join(parts))
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.strip()


@dataclass
class RedisServer:
    port: int
    directory: Path
    process: subprocess.Popen[bytes]

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def flushall(self) -> None:
        reply = redis_command(self.port, "FLUSHALL")
        if reply != b"+OK":
            raise ServiceStartError(f"redis FLUSHALL: {reply!r}")

    def stop(self, timeout_s: float = 10.0) -> None:
        _stop_process(self.process, signal.SIGTERM, timeout_s)
        shutil.rmtree(self.directory, ignore_errors=True)  # best effort, as for PostgreSQL


def start_redis(timeout_s: float = 30.0) -> RedisServer:
    """Start redis-server without persistence on a free port; wait until it answers PING."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceMissingError(f"redis-server is not installed: {REDIS_APT}")
    directory = Path(tempfile.mkdtemp(prefix="tiergate-redis-"))
    log = directory / "server.log"
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    args += ["--appendonly", "no", "--dir", str(directory), "--daemonize", "no"]
    process = _start(args, log, cwd=directory)
    running = RedisServer(port=port, directory=directory, process=process)

    def ready() -> bool:
        try:
            return redis_command(port, "PING", timeout_s=1.0) == b"+PONG"
        except OSError:  # not listening yet
            return False

    try:
        _wait_until(ready, process, log, "redis-server", timeout_s)
    except BaseException:
        running.stop()
        raise
    return running
