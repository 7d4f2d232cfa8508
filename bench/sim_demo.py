"""`tiergate demo`'s fleet and trace slice as a simulation: the same tiers, caps and fault.

The live demo (src/tiergate/demo) replays a trace slice through the gateway at ``speedup``
times real time, with engines ``speedup`` times faster than the performance model and the
fleet's gateway timings (breaker window, health and scrape intervals) in wall seconds. The
simulation runs that same wall time virtually: arrivals divided by ``speedup``, engine steps
divided by ``speedup``, the fleet's timings as written, and the on-prem tier failing every
request (503) from the request at ``break_at`` of the slice to the one at ``heal_at``, as the
demo's scenario does. Latencies are reported in trace time (times ``speedup``), as the demo
reports them.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import replace
from pathlib import Path

from tiergate.demo.run import BREAK_FAULTS
from tiergate.demo.tiers import DEMO_TIERS
from tiergate.emulator.config import DEFAULT_MAX_MODEL_LEN
from tiergate.sim.faults import FaultWindow
from tiergate.sim.run import Fidelity, SimOptions, Simulation
from tiergate.sim.workloads import TraceRequest, read_trace, slice_trace, speed_up
from tiergate.spec import load_fleet
from tiergate.spec.deployments import Deployment

ROOT = Path(__file__).resolve().parents[1]
FLEET = ROOT / "examples" / "demo-fleet.yaml"
TRACE = ROOT / "examples" / "traces" / "AzureLLMInferenceTrace_code.csv"
MAX_OUTPUT_TOKENS = 1024  # the demo's replay cap (DemoOptions.max_output_tokens)


def demo_requests(
    duration_s: float, speedup: float, start_s: float = 0.0, *, jitter_s: float = 0.0, seed: int = 0
) -> list[TraceRequest]:
    """The demo's requests: its slice, compressed, with its prompt and output caps.

    ``jitter_s`` delays each arrival by up to that many (wall) seconds, uniformly from
    ``seed``: the live replay sends each request when its event loop gets to it, a
    millisecond or so late, and the cascade's spillover turns such differences into different
    runs. Jittered runs show how much of a difference that alone makes.
    """
    window = slice_trace(read_trace(TRACE), start_s=start_s, duration_s=duration_s)
    prompt_cap = DEFAULT_MAX_MODEL_LEN - MAX_OUTPUT_TOKENS
    rng = random.Random(seed)
    requests = [
        TraceRequest(
            r.arrival_s + (rng.uniform(0.0, jitter_s) if jitter_s else 0.0),
            max(1, min(r.prompt_tokens, prompt_cap)),
            max(1, min(r.output_tokens, MAX_OUTPUT_TOKENS)),
        )
        for r in speed_up(window, speedup)
    ]
    return sorted(requests, key=lambda r: r.arrival_s)


def demo_simulation(
    requests: list[TraceRequest], speedup: float, *, seed: int = 0, fidelity: Fidelity = "iteration"
) -> Simulation:
    """The demo's fleet with its emulated hardware as static deployments, and its fault."""
    env = {**os.environ}
    env.setdefault("TIERGATE_DEMO_ONPREM_URL", "http://127.0.0.1:8101/v1")
    env.setdefault("TIERGATE_DEMO_CLOUD_URL", "http://127.0.0.1:8102/v1")
    env.setdefault("TIERGATE_DEMO_API_URL", "http://127.0.0.1:8103/v1")
    fleet = load_fleet(FLEET, env=env)
    deployments = tuple(
        Deployment(tier=tier.name, gpu=plan.gpu, tp=plan.tp, replicas=plan.replicas)
        for tier, plan in zip(fleet.cascade, DEMO_TIERS, strict=True)
    )
    fleet = replace(fleet, deployments=deployments)
    simulation = Simulation(
        fleet, SimOptions(seed=seed, fidelity=fidelity, speed=speedup, warmup_s=0.0)
    )
    broken = requests[math.ceil(0.3 * len(requests)) - 1].arrival_s
    healed = requests[math.ceil(0.6 * len(requests)) - 1].arrival_s
    simulation.add_faults(
        [
            FaultWindow(
                "errors",
                fleet.cascade[0].name,
                broken,
                healed,
                rate=float(str(BREAK_FAULTS["error_rate"])),
                status=int(str(BREAK_FAULTS["error_status"])),
            )
        ]
    )
    return simulation


if __name__ == "__main__":
    import time

    speedup = 12.0
    requests = demo_requests(600.0, speedup)
    for fidelity in ("iteration",):
        simulation = demo_simulation(requests, speedup, fidelity=fidelity)  # type: ignore[arg-type]
        started = time.perf_counter()
        simulation.run(requests)
        wall = time.perf_counter() - started
        print(fidelity, f"{len(requests)} requests in {wall:.2f} s")
        for name, stats in simulation.gateway.stats.items():
            p50, p95 = stats.ttft.quantile(0.5), stats.ttft.quantile(0.95)
            print(
                f"  {name:28s} served {stats.requests:5d}  ttft p50 "
                f"{(p50 or 0) * speedup:6.3f} p95 {(p95 or 0) * speedup:6.3f}  "
                f"left {dict(sorted(stats.fallbacks.items()))}"
            )
        print("  failed", simulation.gateway.failed, "events", simulation.events.counts)
