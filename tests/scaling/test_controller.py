"""The scaler's loop end to end on loopback: engines' /metrics → both policies → KEDA's gRPC
client and the dry-run table."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import aiohttp
import grpc
import pytest
from click.testing import CliRunner

from tests.scaling_keda.conftest import CHANNEL_OPTIONS
from tests.scaling_keda.keda_client import KedaClient
from tiergate.cli.main import cli
from tiergate.scaling.controller import NO_KUBERNETES, Controller
from tiergate.scaling.keda import serve
from tiergate.spec import parse_fleet

# Two busy engines: KV nearly full, queues far past 10 per replica.
BUSY = """\
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="m",engine="0"} 30
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m",engine="0"} 60
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{model_name="m",engine="0"} 0.97
"""


@pytest.fixture
def engines() -> Iterator[list[str]]:
    """Two fake engines' /metrics on 127.0.0.1, served from threads (any event loop may ask)."""

    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = BUSY.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    servers = [ThreadingHTTPServer(("127.0.0.1", 0), Metrics) for _ in range(2)]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    yield [f"http://127.0.0.1:{s.server_address[1]}/metrics" for s in servers]
    for server in servers:
        server.shutdown()
        server.server_close()


def fleet_text(urls: list[str], mode: str = "tiergate") -> str:
    listed = ", ".join(f'"{url}"' for url in urls)
    return f"""\
models:
  - {{name: qwen, provider: openai-compatible, baseUrl: "http://vllm:8000/v1", model: q, costPer1kTokens: 1}}
scaling:
  - deployment: vllm-qwen
    mode: {mode}
    minReplicas: 2
    maxReplicas: 8
    coldStartS: 300
    targets: {{kvCacheUsage: 0.8, waitingPerReplica: 10, ttftP95S: 2}}
    signals: {{scrape: {{urls: [{listed}]}}}}
"""


@pytest.mark.parametrize("mode", ["tiergate", "hpa"])
async def test_busy_engines_get_more_replicas_through_keda(engines: list[str], mode: str) -> None:
    fleet = parse_fleet(fleet_text(engines, mode), "f.yaml", env={})
    async with aiohttp.ClientSession() as session:
        controller = Controller(fleet.scaling, session)
        await controller.step()
        (item,) = controller.scaled.values()
        assert item.snapshot is not None
        assert item.snapshot.ready == 2
        assert NO_KUBERNETES in item.snapshot.notes
        assert item.decision is not None
        assert item.other_decision is not None
        # 60 waiting at 10 per replica: 6 replicas in both modes (within [2, 8]).
        assert item.decision.desired == item.other_decision.desired == 6
        server = await serve(controller.decide, "127.0.0.1", 0)
        try:
            async with grpc.aio.insecure_channel(
                f"127.0.0.1:{server.port}", options=CHANNEL_OPTIONS
            ) as channel:
                keda = KedaClient(channel)
                ref = keda.ref(deployment="vllm-qwen")
                (spec,) = (await keda.get_metric_spec(ref)).metricSpecs
                request = keda.proto.GetMetricsRequest(
                    scaledObjectRef=ref, metricName=spec.metricName
                )
                (value,) = (await keda.get_metrics(request)).metricValues
                assert (value.metricValue, value.metricValueFloat) == (6, 6.0)
                assert (await keda.is_active(ref)).result is True
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await keda.get_metric_spec(keda.ref(deployment="other"))
                assert caught.value.code() is grpc.StatusCode.NOT_FOUND
        finally:
            await server.close(grace_s=1.0)


def test_dry_run_shows_both_modes(engines: list[str], tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(fleet_text(engines))
    result = CliRunner().invoke(
        cli, ["scale", "-c", str(path), "--dry-run", "--once"], env={"COLUMNS": "250"}
    )
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "vllm-qwen" in line)
    cells = [cell.strip() for cell in row.split("│") if cell.strip()]
    assert cells[:10] == [
        "vllm-qwen",
        "unified",
        "2",
        "0.97",
        "60",
        "120",
        "?",
        "tiergate",
        "6",
        "6",
    ]


def test_scale_needs_a_scaling_section_and_one_action(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(fleet_text(["http://127.0.0.1:9/metrics"]).split("scaling:")[0])
    runner = CliRunner()
    both = runner.invoke(cli, ["scale", "-c", str(path), "--dry-run", "--serve"])
    assert both.exit_code == 2
    assert "choose one of --dry-run and --serve" in both.output
    none = runner.invoke(cli, ["scale", "-c", str(path), "--dry-run"])
    assert none.exit_code == 2
    assert "no 'scaling' section" in none.stderr
