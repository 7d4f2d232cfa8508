"""``tiergate serve --workers N`` never multiplies budgets and rate limits kept in each process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import yaml

from tests.gateway.helpers import fleet_yaml, free_port, tier
from tiergate.spec import parse_fleet


def governed_fleet(store: Path, **governance: object) -> str:
    section = {"ledger": {"store": f"sqlite:///{store}"}, **governance}
    tiers = [tier("main", "http://127.0.0.1:9/v1")]
    return fleet_yaml(tiers) + yaml.safe_dump({"governance": section}, sort_keys=False)


async def test_serve_refuses_workers_with_per_process_budgets(tmp_path: Path) -> None:
    spec = tmp_path / "fleet.yaml"
    spec.write_text(governed_fleet(tmp_path / "ledger.db", budgets=[{"team": "ml", "usd": 0.03}]))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tiergate", "serve", "-c", str(spec),
        "--host", "127.0.0.1", "--port", str(free_port()), "--workers", "2",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group: killed whole if it hangs
    )  # fmt: skip
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 2, output.decode()
    (line,) = output.decode().splitlines()
    assert "cannot start 2 workers" in line
    assert "governance.redis" in line
    assert "--workers 1" in line


def test_only_limits_counted_in_each_process_keep_workers_out(tmp_path: Path) -> None:
    from tiergate.gateway.workers import per_process_limits  # noqa: PLC0415 - new in #14

    store = tmp_path / "ledger.db"

    def refusal(text: str, workers: int) -> str | None:
        return per_process_limits(parse_fleet(text, "fleet.yaml", env={}), workers)

    assert refusal(governed_fleet(store), 2) is not None  # keys may carry budgets at any time
    assert refusal(governed_fleet(store, rateLimits=[{"team": "ml", "rpm": 5}], keys="off"), 3)
    assert refusal(governed_fleet(store), 1) is None
    assert refusal(governed_fleet(store, redis="redis://127.0.0.1:6379/0"), 4) is None
    assert refusal(governed_fleet(store, keys="off"), 4) is None  # nothing to multiply
    assert refusal(fleet_yaml([tier("main", "http://127.0.0.1:9/v1")]), 4) is None
