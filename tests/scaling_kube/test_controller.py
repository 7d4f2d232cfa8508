"""The scaler with the Kubernetes source on loopback: engines' /metrics and a fake API server →
the controller's snapshot and decisions, and ``tiergate scale --dry-run``."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
from aiohttp import web
from click.testing import CliRunner

from tests.loopback import LoopbackServer
from tests.scaling_kube.conftest import LABELS, NOW, TOKEN, WALL
from tests.scaling_kube.fake_kube import FakeKubernetes, deployment, pod
from tiergate.cli.main import cli
from tiergate.scaling.controller import NO_COUNT, NO_KUBERNETES, Controller
from tiergate.scaling.kubernetes import replicas_from_spec
from tiergate.spec import parse_fleet

# Two busy engines: 60 waiting in all, 10 per replica wanted: 6 replicas.
BUSY = """\
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="m",engine="0"} 30
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m",engine="0"} 60
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{model_name="m",engine="0"} 0.97
"""


class Engine(LoopbackServer):
    """One ready replica's /metrics."""

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        return app

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=BUSY, content_type="text/plain")


def fleet_text(engines: list[Engine], kube: FakeKubernetes, token_file: Path) -> str:
    urls = ", ".join(f'"http://127.0.0.1:{engine.port}/metrics"' for engine in engines)
    return f"""\
models:
  - {{name: qwen, provider: openai-compatible, baseUrl: "http://vllm:8000/v1", model: q, costPer1kTokens: 1}}
scaling:
  - deployment: vllm-qwen
    minReplicas: 2
    maxReplicas: 8
    coldStartS: 300
    targets: {{waitingPerReplica: 10}}
    signals: {{scrape: {{urls: [{urls}]}}}}
    kubernetes: {{namespace: llm, apiServer: "http://127.0.0.1:{kube.port}", tokenFile: {token_file}}}
"""


def scaling_up(kube: FakeKubernetes, wall: float) -> None:
    """Two replicas ready (the engines), two more asked for and loading their weights."""
    kube.deployments[("llm", "vllm-qwen")] = deployment(
        "vllm-qwen", "llm", replicas=4, ready=2, labels=LABELS
    )
    kube.pods["llm"] = [
        pod("vllm-qwen-aaaaa", "llm", LABELS, wall - 3600, "ready"),
        pod("vllm-qwen-bbbbb", "llm", LABELS, wall - 3600, "ready"),
        pod("vllm-qwen-ccccc", "llm", LABELS, wall - 120, "loading"),
        pod("vllm-qwen-ddddd", "llm", LABELS, wall - 60, "unscheduled"),
    ]


async def test_pending_replicas_reach_the_snapshot_and_hold_the_scale_up(
    kube: FakeKubernetes, token_file: Path
) -> None:
    async with Engine() as one, Engine() as two:
        fleet = parse_fleet(fleet_text([one, two], kube, token_file), "f.yaml", env={})
        scaling_up(kube, WALL)
        async with aiohttp.ClientSession() as session:
            replicas = replicas_from_spec(fleet.scaling, session, wall=lambda: WALL)
            controller = Controller(fleet.scaling, session, clock=lambda: NOW, replicas=replicas)
            await controller.step()
            (item,) = controller.scaled.values()
            snapshot, decision, hpa = item.snapshot, item.decision, item.other_decision
            assert snapshot is not None
            assert decision is not None
            assert hpa is not None
            assert (snapshot.ready, len(snapshot.replicas), snapshot.pending) == (2, 2, 2)
            assert snapshot.pending_ready_at == (NOW + 180, NOW + 240)
            assert NO_COUNT not in snapshot.notes
            assert NO_KUBERNETES not in snapshot.notes
            # The two loading replicas answer the queue: tiergate holds at 4; the HPA asks 6.
            assert (decision.desired, decision.guard) == (4, "pending")
            assert hpa.desired == 6

            # The Deployment gone (or RBAC revoked): the controller counts what it scrapes.
            del kube.deployments[("llm", "vllm-qwen")]
            await controller.step()
            assert item.snapshot is not None
            assert (item.snapshot.ready, item.snapshot.pending) == (2, 0)
            assert NO_COUNT in item.snapshot.notes


@contextmanager
def in_thread(*servers: LoopbackServer) -> Iterator[None]:
    """Serve ``servers`` from an event loop of their own: the CLI runs its own loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        for server in servers:
            asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=10)
        yield
    finally:
        for server in servers:
            asyncio.run_coroutine_threadsafe(server.close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def test_dry_run_reads_the_kubernetes_api(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    kube, engines = FakeKubernetes(token=TOKEN), [Engine(), Engine()]
    with in_thread(kube, *engines):
        scaling_up(kube, time.time())  # the CLI's clocks are the real ones
        path = tmp_path / "fleet.yaml"
        path.write_text(fleet_text(engines, kube, token_file))
        result = CliRunner().invoke(
            cli, ["scale", "-c", str(path), "--dry-run", "--once"], env={"COLUMNS": "250"}
        )
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "vllm-qwen" in line)
    cells = [cell.strip() for cell in row.split("│") if cell.strip()]
    # ready from the API (2); tiergate's decision and the HPA's: 4 held by pending, and 6.
    assert (cells[0], cells[2], cells[7], cells[8], cells[9]) == (
        "vllm-qwen",
        "2",
        "tiergate",
        "4",
        "6",
    )
    assert "pending replica(s) answer it" in cells[10]
    assert [seen.authorization for seen in kube.seen] == [f"Bearer {TOKEN}"] * 2
