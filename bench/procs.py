"""Process helpers for the gateway benchmark: spawn pinned, wait for ready, measure, stop.

Everything here talks to 127.0.0.1 only and every wait is bounded by a deadline.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
POLL_INTERVAL_S = 0.005
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A failure the harness reports in one clear line, without a traceback."""


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def http_status(port: int, path: str, timeout_s: float = 0.5) -> int | None:
    """Status of ``GET path`` on 127.0.0.1:port, or None when nothing answers."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def http_post(
    port: int, path: str, body: bytes, api_key: str, timeout_s: float = 30.0
) -> tuple[int, bytes]:
    """``POST path`` with a JSON body on 127.0.0.1:port: status and full response body."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@dataclass
class Service:
    """A process the harness started, pinned to one CPU, in its own process group."""

    name: str
    proc: subprocess.Popen[bytes]
    spawned_at: float
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the service's combined stdout and stderr."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def log_count(self, needle: str) -> int:
        """How many times ``needle`` occurs in the service's log."""
        try:
            return self.log_path.read_text(errors="replace").count(needle)
        except OSError:
            return 0

    def check_alive(self) -> None:
        """Raise with the log's tail when the process has exited."""
        code = self.proc.poll()
        if code is not None:
            raise BenchError(
                f"{self.name} exited with status {code}; last lines of {self.log_path}:\n"
                + self.log_tail()
            )

    def wait_ready(self, port: int, path: str, timeout_s: float) -> float:
        """Poll ``GET path`` every 5 ms until 200; seconds from spawn to that answer."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if http_status(port, path, timeout_s=1.0) == 200:
                return time.perf_counter() - self.spawned_at
            self.check_alive()
            time.sleep(POLL_INTERVAL_S)
        raise BenchError(
            f"{self.name} did not answer 200 on {path} within {timeout_s:.0f} s; "
            f"last lines of {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM the process group, then SIGKILL it after ``grace_s``."""
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace_s)
        # Children may outlive a leader that exited: kill the whole group either way.
        _signal_group(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=grace_s)


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def spawn(
    name: str,
    cmd: list[str],
    *,
    cpu: int,
    log_path: Path,
    env: dict[str, str] | None = None,
    drop_env: tuple[str, ...] = (),
) -> Service:
    """Start ``cmd`` under ``taskset -c cpu`` in a new session, in the log's folder.

    Output goes to ``log_path``; ``env`` adds variables, ``drop_env`` removes some.
    """
    full_env = {k: v for k, v in os.environ.items() if k not in drop_env} | (env or {})
    with log_path.open("wb") as log:
        spawned_at = time.perf_counter()
        proc = subprocess.Popen(
            ["taskset", "-c", str(cpu), *cmd],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=log_path.parent,
            start_new_session=True,
        )
    return Service(name=name, proc=proc, spawned_at=spawned_at, log_path=log_path)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    with contextlib.suppress(OSError):
        for task in task_dir.iterdir():
            with contextlib.suppress(OSError):
                found.extend(int(c) for c in (task / "children").read_text().split())
    return found


def process_tree(pid: int, limit: int = 256) -> list[int]:
    """``pid`` and its live descendants (at most ``limit`` processes)."""
    tree: list[int] = []
    queue = [pid]
    while queue and len(tree) < limit:
        current = queue.pop()
        tree.append(current)
        queue.extend(_children(current))
    return tree


def _status_kib(pid: int, field: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_kib(pid: int) -> int:
    """Resident memory (VmRSS) of the process tree rooted at ``pid``, in KiB."""
    return sum(_status_kib(p, "VmRSS") for p in process_tree(pid))


def hwm_kib(pid: int) -> int:
    """Peak resident memory (VmHWM) summed over the process tree, in KiB."""
    return sum(_status_kib(p, "VmHWM") for p in process_tree(pid))


def _cpu_ticks(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        # utime, stime, cutime, cstime are fields 14-17; index 0 here is field 3.
        return sum(int(v) for v in fields[11:15])
    return 0


def cpu_seconds(pid: int) -> float:
    """CPU time used so far by the process tree rooted at ``pid`` (reaped children included)."""
    return sum(_cpu_ticks(p) for p in process_tree(pid)) / CLOCK_TICKS


def listen_overflows() -> int:
    """The kernel's count of connections dropped because a listen backlog was full.

    Machine-wide (``TcpExt ListenOverflows`` in /proc/net/netstat); each drop costs the
    client a SYN retransmit, one second or more.
    """
    with contextlib.suppress(OSError, ValueError):
        lines = Path("/proc/net/netstat").read_text().splitlines()
        for names, values in zip(lines[::2], lines[1::2], strict=False):
            if names.startswith("TcpExt:"):
                fields = dict(zip(names.split()[1:], values.split()[1:], strict=True))
                return int(fields.get("ListenOverflows", 0))
    return 0


def wait_idle(
    pid: int, timeout_s: float, window_s: float = 0.25, busy_share: float = 0.10
) -> float:
    """Wait until the process tree uses under ``busy_share`` of a core for two windows running.

    A gateway slower than the offered load keeps working through the requests that an
    earlier wrk run left behind; measuring the next case before that backlog drains would
    charge it to that case. Returns the seconds waited (``timeout_s`` at most).
    """
    started = time.monotonic()
    quiet = 0
    before = cpu_seconds(pid)
    while quiet < 2 and time.monotonic() - started < timeout_s:
        time.sleep(window_s)
        after = cpu_seconds(pid)
        quiet = quiet + 1 if after - before < busy_share * window_s else 0
        before = after
    return time.monotonic() - started


def exit_on_sigterm() -> None:
    """Make SIGTERM a SystemExit, which unwinds every try/finally: started processes stop."""

    def handler(signum: int, _frame: object) -> None:
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def run_main(body: Callable[[], int]) -> int:
    """A benchmark's ``main``: SIGTERM unwinds (see :func:`exit_on_sigterm`), a
    :class:`BenchError` is one line on stderr and exit 1, Ctrl-C exit 130."""
    exit_on_sigterm()
    try:
        return body()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; every process the harness started was stopped", file=sys.stderr)
        return 130
