"""``tiergate simulate`` end to end: tiny traces whose figures are worked out by hand."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tiergate.cli.main import cli
from tiergate.perf import PerfModel, gpu_named, model_named
from tiergate.sim.accounting import build_result
from tiergate.sim.run import SimOptions, Simulation
from tiergate.sim.workloads import TraceRequest
from tiergate.spec import load_fleet

TWO_TIERS = """\
routing:
  cascadeOrder: [gpu, api]
  fallbackConditions:
    - statusCode: [429, 500, 502, 503, 504]
{extra_conditions}
models:
  - name: gpu
    provider: openai-compatible
    baseUrl: http://gpu:8000/v1
    model: Qwen/Qwen3-32B
    pricing: {{gpuHourUsd: 4, gpus: 2}}
{gpu_extra}
  - name: api
    provider: bedrock
    model: anthropic.claude-sonnet-4-20250514
    region: us-east-1
deployments:
  - {{tier: gpu, gpu: H100, tp: 2, replicas: 1}}
{sections}
"""


def fleet_file(tmp_path: Path, *, conditions: str = "", gpu: str = "", sections: str = "") -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(TWO_TIERS.format(extra_conditions=conditions, gpu_extra=gpu, sections=sections))
    return path


def trace_file(tmp_path: Path, arrivals: list[float], prompt: int, output: int) -> Path:
    """An Azure-format trace: one request at each arrival (seconds from the first)."""
    path = tmp_path / "trace.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["TIMESTAMP", "ContextTokens", "GeneratedTokens"])
        for at in arrivals:
            whole, fraction = divmod(at, 1)
            minutes, seconds = divmod(int(whole), 60)
            hours, minutes = divmod(minutes, 60)
            stamp = f"2023-11-16 {10 + hours:02d}:{minutes:02d}:{seconds:02d}.{round(fraction * 1e7):07d}"
            writer.writerow([stamp, prompt, output])
    return path


def qwen_on_two_h100() -> PerfModel:
    return PerfModel(model_named("Qwen/Qwen3-32B"), gpu_named("H100"), 2)


def simulate(path: Path, requests: list[TraceRequest], horizon_s: float, seed: int = 0):  # type: ignore[no-untyped-def]
    simulation = Simulation(load_fleet(path), SimOptions(seed=seed, horizon_s=horizon_s))
    end = simulation.run(requests)
    return simulation, build_result(simulation, end=end, wall_s=1.0, trace="hand")


def test_three_lone_requests_cost_their_gpu_hours_and_take_their_prefill(tmp_path: Path) -> None:
    fleet = fleet_file(tmp_path)
    trace = trace_file(tmp_path, [0.0, 100.0, 200.0], prompt=1000, output=10)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        [
            "simulate",
            "-c",
            str(fleet),
            "--trace",
            str(trace),
            "--duration",
            "3600",
            "-o",
            str(out),
            "--requests-csv",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary == json.loads((out / "summary.json").read_text())
    gpu, api = summary["tiers"]
    perf = qwen_on_two_h100()
    # Each request finds the replica idle: its first token comes after its prefill step, the
    # nine other tokens one decode step each, at contexts 1001 ... 1009.
    prefill = perf.step_time([(1000, 0)], [])
    decodes = sum(perf.step_time([], [1000 + n]) for n in range(1, 10))
    assert summary["requests"] == {
        "total": 3,
        "served": 3,
        "failed": 0,
        "unfinished": 0,
        "failedByStatus": {},
    }
    assert gpu["requests"] == 3
    assert api["requests"] == 0
    assert gpu["ttft"]["p50Seconds"] == pytest.approx(prefill, rel=0.01)  # the sketch's 1%
    assert gpu["inputTokens"] == 3000
    assert gpu["outputTokens"] == 30
    # One replica of 2 GPUs held for the hour at $4 per GPU-hour: 2 GPU-hours, $8.
    assert gpu["gpuHoursBilled"] == pytest.approx(2.0)
    assert gpu["costUsd"] == pytest.approx(8.0)
    # (summary.json rounds to 1e-6)
    assert gpu["gpuHoursBusy"] == pytest.approx(3 * (prefill + decodes) * 2 / 3600, abs=1e-6)
    assert gpu["usdPerMillionTokens"] == pytest.approx(8.0 / 3030 * 1e6, rel=1e-5)
    assert summary["costUsd"] == pytest.approx(8.0)
    assert summary["slo"]["met"] is True
    rows = list(csv.DictReader((out / "requests.csv").read_text().splitlines()))
    assert [row["tier"] for row in rows] == ["gpu"] * 3
    assert float(rows[1]["arrival_s"]) == pytest.approx(100.0)
    assert "<img" in (out / "report.html").read_text()


def test_a_failing_tier_falls_back_then_its_breaker_opens(tmp_path: Path) -> None:
    fleet = fleet_file(
        tmp_path,
        conditions='    - errorRate: "> 0.1"\n  breaker: {windowMs: 60000, minRequests: 10, cooldownMs: 30000}',
        sections="simulation:\n  faults:\n    - {kind: errors, tier: gpu, at: 0, duration: 1h, rate: 1.0}",
    )
    requests = [TraceRequest(float(t), 1000, 10) for t in range(20)]
    _simulation, result = simulate(fleet, requests, horizon_s=60.0)
    gpu, api = result.tiers
    # Requests 0-9 reach the GPU tier and get 503 (a listed status: they move on); after the
    # tenth failure the error rate 10/10 is over 0.1 with minRequests 10, so the breaker opens
    # at t=9 and requests 10-19 (before the 30 s cool-down ends) skip the tier.
    assert gpu.fallbacks_by_reason == {"status": 10, "breaker_open": 10}
    assert api.requests == 20
    assert gpu.requests == 0
    # Claude Sonnet 4 at $3 / $15 per million: 20 x (1,000 x 3e-6 + 10 x 15e-6) = $0.063.
    assert api.cost_usd == pytest.approx(0.063)
    assert result.event_counts["breaker"] == 1


def test_an_outage_refuses_connections_until_health_checks_mark_it_down(tmp_path: Path) -> None:
    fleet = fleet_file(
        tmp_path,
        gpu="    healthCheck: {endpoint: /health, intervalMs: 1000, unhealthyThreshold: 2, healthyThreshold: 2}",
        sections="simulation:\n  faults:\n    - {kind: outage, tier: gpu, at: 10, duration: 10}",
    )
    requests = [TraceRequest(float(t), 100, 2) for t in range(31)]
    _, result = simulate(fleet, requests, horizon_s=40.0)
    gpu, api = result.tiers
    # Probes every second from 0. The outage starts at 10: the probe at 10 is the first
    # failure and the request at 10 is refused (connect_error); the probe at 11 is the second,
    # so the tier is down from 11 and requests 11-20 skip it (unhealthy). The outage ends at
    # 20: probes at 20 and 21 pass, the tier is up at 21, and requests 21-30 are served.
    assert gpu.fallbacks_by_reason == {"connect_error": 1, "unhealthy": 10}
    assert gpu.requests == 20
    assert api.requests == 11


def test_a_managed_quota_throttles_with_429_and_frees_up_after_a_minute(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(
        "models:\n"
        "  - {name: api, provider: bedrock, model: qwen.qwen3-32b-v1:0, region: us-east-1}\n"
        "simulation:\n  managed:\n    api: {quota: {requestsPerMinute: 5}}\n"
    )
    requests = [TraceRequest(float(t), 100, 5) for t in range(8)]
    requests.append(TraceRequest(61.0, 100, 5))
    _, result = simulate(path, requests, horizon_s=120.0)
    (api,) = result.tiers
    # Five requests in the minute; 6-8 get 429, listed by default as a fallback status, and
    # with no tier left the gateway answers 502; at 61 s the first request left the window.
    assert api.requests == 6
    assert api.fallbacks_by_reason == {"status": 3}
    assert dict(result.failed_by_status) == {"502": 3}
    # Qwen3-32B on Bedrock, the default source: $0.15 / $0.60 per million.
    assert api.cost_usd == pytest.approx(6 * (100 * 0.15e-6 + 5 * 0.60e-6))
    assert "0.15/$0.6 per M" in api.price_note


POOLED = """\
routing:
  cascadeOrder: [cloud, api]
models:
  - {name: cloud, provider: openai-compatible, baseUrl: "http://cloud:8000/v1", model: Qwen/Qwen3-32B}
  - {name: api, provider: bedrock, model: qwen.qwen3-32b-v1:0, region: us-east-1}
deployments:
  - {tier: cloud, gpu: H100, tp: 2, replicas: 1, nodePools: [spot]}
nodePools:
  - name: spot
    instanceTypes: [p5.48xlarge]
    capacityTypes: [spot]
    spotInterruptionsPerInstanceHour: 0.5
    disruption: {consolidateAfter: 30s}
scaling:
  - deployment: cloud
    mode: hpa
    minReplicas: 1
    maxReplicas: 8
    targets: {waitingPerReplica: 2}
    signals: {prometheus: {url: "http://prometheus:9090"}}
"""


def test_a_seeded_run_with_nodes_and_scaling_repeats_exactly(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(POOLED)
    # Ten requests a second: more than one replica serves (about 8.5 a second at saturation).
    trace = [TraceRequest(t * 0.1, 2000, 50) for t in range(9000)]
    first = simulate(path, trace, horizon_s=900.0, seed=3)[1].to_json(timing=False)
    again = simulate(path, trace, horizon_s=900.0, seed=3)[1].to_json(timing=False)
    other = simulate(path, trace, horizon_s=900.0, seed=4)[1].to_json(timing=False)
    assert first == again
    assert first != other  # spot interruptions and the managed API's latencies are drawn
    cloud = first["tiers"][0]
    # The p5's spot price is the seed's $14/h: billed seconds times 14 / 3600.
    assert cloud["costUsd"] == pytest.approx(cloud["gpuHoursBilled"] / 8 * 14.0, rel=1e-6)
    assert first["eventCounts"].get("scale", 0) >= 1


def test_a_tier_without_gpus_or_a_managed_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(
        "models:\n  - {name: gpu, provider: openai-compatible, baseUrl: 'http://g:8000/v1', "
        "model: Qwen/Qwen3-32B}\n"
    )
    trace = trace_file(tmp_path, [0.0], prompt=10, output=2)
    result = CliRunner().invoke(cli, ["simulate", "-c", str(path), "--trace", str(trace)])
    assert result.exit_code == 2
    assert "tier gpu (openai-compatible) has no deployments entry" in result.output
