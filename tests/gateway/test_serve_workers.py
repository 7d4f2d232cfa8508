"""``tiergate serve --workers N`` as a process: each worker gets ``--log-level``, a worker that
dies is started again (and a crash loop ends), and each request is one JSON access-log line."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

from tests.gateway.helpers import StartUpstreams, eventually, fleet_yaml, tier
from tests.gateway.test_serve_process import ServeProcess, StartServe, one_tier, serve

__all__ = ["serve"]  # the fixture, shared with test_serve_process


def workers_of(server: ServeProcess) -> set[int]:
    """The pids of the supervisor's children (from /proc: no psutil)."""
    pids: set[int] = set()
    for task in Path(f"/proc/{server.proc.pid}/task").iterdir():
        pids.update(int(pid) for pid in (task / "children").read_text().split())
    return pids


def log_lines(server: ServeProcess) -> list[dict[str, Any]]:
    """The JSON log lines written so far (stderr is a file: every line is JSON)."""
    lines = []
    for line in server.log.read_text().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


async def test_a_killed_worker_is_started_again_and_logged(
    upstreams: StartUpstreams, serve: StartServe
) -> None:
    (a,) = await upstreams("a")
    server = await serve(one_tier(a), "--workers", "2")
    await eventually(lambda: len(workers_of(server)) == 2, what="two workers")
    before = workers_of(server)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)

    def replaced() -> bool:
        now = workers_of(server)
        return len(now) == 2 and victim not in now

    await eventually(replaced, timeout_s=10.0, what="a new worker in place of the killed one")
    restarts = [
        line
        for line in log_lines(server)
        if line["logger"] == "tiergate.serve"
        and f"worker {victim} was killed by SIGKILL" in line["message"]
    ]
    assert len(restarts) == 1, server.log.read_text()
    assert restarts[0]["level"] == "WARNING"
    for _ in range(10):  # the port keeps serving, whichever worker takes the connection
        status, _ = await server.chat()
        assert status == 200
    assert server.proc.returncode is None


async def test_workers_that_keep_dying_make_the_supervisor_give_up(
    upstreams: StartUpstreams, serve: StartServe
) -> None:
    (a,) = await upstreams("a")
    server = await serve(one_tier(a), "--workers", "2")
    await eventually(lambda: len(workers_of(server)) == 2, what="two workers")
    # Every new worker now fails to start (exit 2), so restarts cannot help.
    server.write_spec("routing:\n  strategy: random\nmodels: []\n")
    os.kill(min(workers_of(server)), signal.SIGKILL)
    assert await asyncio.wait_for(server.proc.wait(), 30) == 1
    messages = [line["message"] for line in log_lines(server) if line["level"] == "ERROR"]
    assert any("giving up" in message for message in messages), server.log.read_text()


async def test_the_log_level_reaches_every_worker(
    upstreams: StartUpstreams, serve: StartServe
) -> None:
    (a,) = await upstreams("a")
    # A health check that fails: its probes log at DEBUG only.
    probed = tier(
        "main", a, healthCheck={"endpoint": "http://127.0.0.1:9/health", "intervalMs": 100}
    )
    server = await serve(fleet_yaml([probed]), "--workers", "2", "--log-level", "debug")

    def probes_logged_by_both() -> bool:
        pids = {
            line.get("pid")
            for line in log_lines(server)
            if line["level"] == "DEBUG" and "health probe of main" in line["message"]
        }
        return len(pids) == 2

    await eventually(probes_logged_by_both, timeout_s=10.0, what="debug lines of both workers")


async def test_each_request_is_one_json_access_line_without_the_key(
    upstreams: StartUpstreams, serve: StartServe
) -> None:
    (a,) = await upstreams("a")
    server = await serve(one_tier(a))
    body = {"model": "main", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-request-id": "req-123", "Authorization": "Bearer sk-secret-in-header"}
    async with server.http.post(
        server.url + "/v1/chat/completions", json=body, headers=headers
    ) as response:
        assert response.status == 200
    async with server.http.post(
        server.url + "/v1/chat/completions", json={**body, "model": "nope"}
    ) as response:
        assert response.status == 404

    def two_lines() -> bool:
        return len([x for x in log_lines(server) if x["logger"] == "tiergate.access"]) == 2

    await eventually(two_lines, what="two access lines")
    served, missing = [line for line in log_lines(server) if line["logger"] == "tiergate.access"]
    assert served["level"] == "INFO"
    assert {k: served[k] for k in ("request_id", "model", "tier", "attempts", "status")} == {
        "request_id": "req-123",
        "model": "main",
        "tier": "main",
        "attempts": 1,
        "status": 200,
    }
    assert served["key_id"] is None  # no governance: no key
    assert served["input_tokens"] > 0
    assert served["latency_ms"] >= 0
    assert served["cost_usd"] >= 0
    assert (missing["status"], missing["tier"], missing["attempts"]) == (404, None, 0)
    assert "sk-secret-in-header" not in server.log.read_text()
