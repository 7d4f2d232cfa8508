"""A live ``tiergate serve`` process for the campaigns: governance on, a virtual key, a cascade.

``live_gateway`` (one per session) runs the gateway as a subprocess on a free loopback port,
logging at debug level into a file, in front of a ``FakeUpstream`` served from a thread of the
test process. Its fleet:

- ``main``: the cascade ``down`` (nothing listens there) → ``main`` (the fake upstream);
- ``lonely``: outside the cascade, nothing listens: the cascade runs out (502/503, tiergate's
  error JSON with the attempts).

Governance keeps a SQLite ledger in the session's temporary directory; a virtual key is created
through ``/admin/keys``, so keys are required from then on (``keys: auto``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.gateway.helpers import fleet_yaml, free_port, refused_url, tier
from tests.gateway.upstream import FakeUpstream

MASTER = "campaign-master-key-0123456789abcdef"


@dataclass(frozen=True)
class LiveGateway:
    """A running ``tiergate serve``: where it listens, its process, its log and its secrets."""

    url: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    key: str
    master: str = MASTER

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.key, self.master)

    def peak_rss_kib(self) -> int:
        """The most memory the gateway has held so far (``VmHWM`` of /proc/PID/status), in KiB:
        the peak, so that a body held whole for a moment counts even once it is freed."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM in /proc status")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def log_problems(self) -> list[str]:
        """Tracebacks (one line per distinct exception and place) and secrets in the log."""
        text = self.log_text()
        problems = [
            f"a traceback in the log ({count}x): {where}"
            for where, count in _tracebacks(text).items()
        ]
        for secret in self.secrets:
            for line in text.splitlines():
                if secret in line:
                    shown = line.replace(secret, "<the secret>")[:300]
                    problems.append(f"a secret in the log: {shown}")
                    break
        return problems


def _tracebacks(text: str) -> dict[str, int]:
    """Each distinct traceback in ``text`` (its exception and the innermost tiergate frame,
    else the innermost frame), with how often it occurs."""
    found: dict[str, int] = {}
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if not line.startswith("Traceback (most recent call last)"):
            continue
        frames: list[str] = []
        exception = "(no exception line)"
        for following in lines[index + 1 :]:
            if following.startswith("  File "):
                frames.append(following.strip())
            elif not following.startswith(" "):
                exception = following
                break
        ours = [f for f in frames if "/tiergate/" in f] or frames or ["(no frame)"]
        where = f"{exception[:160]} at {ours[-1][:200]}"
        found[where] = found.get(where, 0) + 1
    return found


def openai_error(body: bytes) -> dict[str, Any] | None:
    """The ``error`` object of an OpenAI error body, or None when the body is not one."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return None
    return error if isinstance(error.get("type"), str) else None


# 5xx that tiergate answers on purpose: a cascade that ran out, a stream cut, a store down.
OWN_5XX_CODES = {"ledger_unavailable", "limits_unavailable", "stream_interrupted"}


def not_its_own_5xx(status: int, body: bytes, path: str) -> bool:
    """Whether a 5xx is a fault of the gateway (500, or a 5xx that is none of its answers)."""
    if status < 500:
        return False
    error = openai_error(body)
    own = error is not None and (
        error.get("type") == "upstream_error" or error.get("code") in OWN_5XX_CODES
    )
    return status == 500 or not (own or (path == "/ready" and status == 503))


class _UpstreamThread:
    """A ``FakeUpstream`` on its own event loop in a thread: the gateway process calls it."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.upstream = FakeUpstream("main")

    def start(self) -> FakeUpstream:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.upstream.start(), self._loop).result(10)
        return self.upstream

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.upstream.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def _fleet(upstream: FakeUpstream, ledger: Path) -> str:
    tiers = [tier("down", refused_url()), tier("main", upstream), tier("lonely", refused_url())]
    governance = {
        "masterKey": MASTER,
        "keys": "auto",
        "keyCacheMs": 0,
        "ledger": {"store": f"sqlite:///{ledger}"},
    }
    return fleet_yaml(tiers, cascade=["down", "main"]) + yaml.safe_dump(
        {"governance": governance}, sort_keys=False
    )


def _request(url: str, *, data: bytes | None = None, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(400):  # 20 s at most
        if proc.poll() is not None:
            pytest.fail(f"tiergate serve exited {proc.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError):
            if _request(url + "/health")[0] == 200:
                return
        time.sleep(0.05)
    pytest.fail("tiergate serve did not answer /health within 20 s")


@pytest.fixture(scope="session")
def live_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    root = tmp_path_factory.mktemp("campaign")
    upstream = _UpstreamThread()
    spec = root / "fleet.yaml"
    spec.write_text(_fleet(upstream.start(), root / "ledger.db"))
    port = free_port()
    log = root / "serve.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tiergate", "serve", "-c", str(spec),
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "debug"],
            stdout=log_file, stderr=subprocess.STDOUT, env=dict(os.environ),
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        status, body = _request(url + "/admin/keys", data=b'{"team": "campaign"}', token=MASTER)
        assert status == 201, body
        yield LiveGateway(url, port, proc, log, key=json.loads(body)["key"])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        upstream.stop()
