"""``tiergate serve --workers N`` as a process: each worker gets ``--log-level``, a worker that
dies is started again (and a crash loop ends), and each request is one JSON access-log line."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.gateway.helpers import HELLO, StartUpstreams, eventually, fleet_yaml, tier
from tests.gateway.test_governance import create_key, governed
from tests.gateway.test_serve_process import ServeProcess, StartServe, one_tier, serve
from tests.gateway.upstream import PROMPT_TOKENS
from tiergate.gateway.workers import RestartBudget

__all__ = ["serve"]  # the fixture, shared with test_serve_process


def workers_of(server: ServeProcess) -> set[int]:
    """The pids of the supervisor's children (from /proc: no psutil)."""
    pids: set[int] = set()
    for task in Path(f"/proc/{server.proc.pid}/task").iterdir():
        pids.update(int(pid) for pid in (task / "children").read_text().split())
    return pids


def log_lines(server: ServeProcess) -> list[dict[str, Any]]:
    """The JSON log lines written so far (stderr is a file: every line is JSON)."""
    text = server.log.read_text()
    complete = text[: text.rfind("\n") + 1]  # a worker may be writing the last line now
    lines = []
    for line in complete.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def serving(server: ServeProcess) -> set[int]:
    """The pids of the workers that have logged that they are serving."""
    return {line["pid"] for line in log_lines(server) if line["message"].startswith("serving ")}


async def test_a_killed_worker_is_started_again_and_logged(
    upstreams: StartUpstreams, serve: StartServe
) -> None:
    (a,) = await upstreams("a")
    server = await serve(one_tier(a), "--workers", "2")
    await eventually(lambda: len(workers_of(server)) == 2, what="two workers")
    before = workers_of(server)
    # Both listening first: killed alone, the only one listening would leave the port shut.
    await eventually(lambda: before <= serving(server), timeout_s=20.0, what="both serving")
    victim = min(before)
    os.kill(victim, signal.SIGKILL)

    def replaced() -> bool:
        now = workers_of(server)
        return len(now) == 2 and victim not in now

    await eventually(replaced, timeout_s=10.0, what="a new worker in place of the killed one")

    def restarts() -> list[dict[str, Any]]:
        killed = f"worker {victim} was killed by SIGKILL; started worker"
        return [line for line in log_lines(server) if killed in line["message"]]

    await eventually(lambda: len(restarts()) == 1, what="the restart logged")
    assert restarts()[0]["level"] == "WARNING"
    assert restarts()[0]["logger"] == "tiergate.serve"
    after = workers_of(server)
    await eventually(lambda: after <= serving(server), timeout_s=20.0, what="the new one serving")
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
    upstreams: StartUpstreams, serve: StartServe, tmp_path: Path
) -> None:
    (a,) = await upstreams("a")
    priced = tier("main", a, costPer1kTokens=1.0)
    server = await serve(governed([priced], tmp_path / "ledger.db"))
    key, key_id = await create_key(server)  # type: ignore[arg-type]
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=10)
    async with client:
        await client.chat.completions.create(
            model="main", messages=HELLO, extra_headers={"x-request-id": "req-123"}
        )
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model="nope", messages=HELLO)

    def access_lines() -> list[dict[str, Any]]:
        return [line for line in log_lines(server) if line["logger"] == "tiergate.access"]

    await eventually(lambda: len(access_lines()) == 2, what="two access lines")
    served, missing = access_lines()
    assert served["level"] == "INFO"
    fields = ("request_id", "key_id", "model", "tier", "attempts", "status")
    assert {name: served[name] for name in fields} == {
        "request_id": "req-123",
        "key_id": key_id,
        "model": "main",
        "tier": "main",
        "attempts": 1,
        "status": 200,
    }
    assert served["input_tokens"] == PROMPT_TOKENS
    tokens = served["input_tokens"] + served["output_tokens"]
    assert served["cost_usd"] == pytest.approx(tokens / 1000)  # $1 per 1k tokens
    assert served["latency_ms"] >= 0
    assert (missing["key_id"], missing["status"], missing["tier"]) == (key_id, 404, None)
    assert key not in server.log.read_text()


def test_restarts_are_allowed_until_workers_die_too_often() -> None:
    crash_loop = RestartBudget(limit=3, window_s=60.0)
    assert [crash_loop.allows(now) for now in (0.0, 1.0, 2.0, 3.0)] == [True, True, True, False]
    now_and_then = RestartBudget(limit=3, window_s=60.0)  # a death every 30 s never adds up
    assert all(now_and_then.allows(30.0 * n) for n in range(10))
