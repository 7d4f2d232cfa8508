"""Autoscaling evaluation: the seed's KEDA/HPA triggers vs tiergate's policy, closed loop.

Both modes drive the same emulated deployment (``--model`` on ``--tp`` x ``--gpu``, every new
replica cold for ``--cold-start`` model seconds: node launch, image pull and weight load), under
the same replay of the Azure LLM inference trace (code, one hour) at ``--multiplier`` times its
rate (each request copied, copies within a second: bursts and lulls keep their length; or
``--compress``: the trace played that many times faster), with the same signals (each ready
replica's ``/metrics`` scraped, 60 s windows) and the same actuation cadence (a decision every
``--step`` model seconds, the HPA's sync period):

- ``hpa``: what KEDA + the HPA compute from the seed's three triggers written with correct
  semantics (``examples/keda-scaledobject.yaml``): KV cache usage 0.8 as ``Value`` of the
  average, waiting requests 10 per replica as ``AverageValue``, TTFT p95 2 s as ``Value``;
  default behaviour (scale-down stabilization 300 s), min 2, max 8;
- ``tiergate``: the LLM-aware policy with the same three targets plus a prompt-token rate per
  replica (``--prompt-target``, default 70% of what the performance model says one replica
  prefills per second), cold start known, same bounds.

Time runs ``--speed`` times faster than the model's (the emulators, the trace and the scaler's
clock alike); every figure printed is in model seconds. TTFT is measured at the client (first
generated text), so the emulator's HTTP overhead is included, multiplied by the speed.

Printed: per mode the share of requests with TTFT <= ``--slo`` (a failed request misses it),
TTFT quantiles and replica-seconds from the first arrival to ``--tail`` after the last; a
minute-by-minute timeline; and the issue's target: tiergate meets the SLO for more requests at
no more replica-seconds, or uses at least 20% fewer replica-seconds at equal attainment.

Run from the repository root (about 2 x trace duration / multiplier / speed of wall time)::

    .venv/bin/python bench/scaling.py
    .venv/bin/python bench/scaling.py --minutes 20 --speed 6
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from pathlib import Path

import aiohttp
from scaling_loop import ModeResult, Setup, run_mode

from tiergate.perf import PerfModel, gpu_named, model_named
from tiergate.sim.workloads import TraceRequest, read_azure_csv, scale_rate, slice_trace, speed_up

TRACE = Path(__file__).resolve().parent.parent / "examples/traces/AzureLLMInferenceTrace_code.csv"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trace", type=Path, default=TRACE)
    parser.add_argument("--minutes", type=float, default=None, help="of the trace (default all)")
    parser.add_argument("--multiplier", type=float, default=1.5, help="trace rate multiplier")
    parser.add_argument("--compress", action="store_true", help="multiply by compressing time")
    parser.add_argument("--speed", type=float, default=8.0, help="model seconds per wall second")
    parser.add_argument("--model", default="Qwen/Qwen3-32B")
    parser.add_argument("--gpu", default="L40S")
    parser.add_argument("--tp", type=int, default=2)
    parser.add_argument("--cold-start", type=float, default=180.0, help="model seconds")
    parser.add_argument("--step", type=float, default=15.0, help="model seconds per decision")
    parser.add_argument("--slo", type=float, default=2.0, help="TTFT objective, seconds")
    parser.add_argument("--min-replicas", type=int, default=2)
    parser.add_argument("--max-replicas", type=int, default=8)
    parser.add_argument("--prompt-target", type=float, default=None, help="tokens/s/replica")
    parser.add_argument("--tail", type=float, default=60.0, help="model seconds after the last")
    parser.add_argument("--modes", default="hpa,tiergate")
    parser.add_argument("--ticks", type=Path, default=None, help="write every decision here")
    return parser.parse_args(argv)


def load_requests(args: argparse.Namespace) -> list[TraceRequest]:
    requests: list[TraceRequest] = list(read_azure_csv(args.trace))
    if args.minutes is not None:
        requests = list(slice_trace(requests, duration_s=args.minutes * 60))
    if args.compress:
        return list(speed_up(requests, args.multiplier))
    return list(scale_rate(requests, args.multiplier, seed=1))


def prompt_capacity(args: argparse.Namespace, requests: list[TraceRequest]) -> float:
    """Prompt tokens one replica prefills per second at the trace's mean prompt length."""
    perf = PerfModel(model_named(args.model), gpu_named(args.gpu), args.tp)
    mean_prompt = sum(r.prompt_tokens for r in requests) / len(requests)
    return mean_prompt / perf.prefill_time(round(mean_prompt))


def quantile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def summary_rows(results: list[ModeResult], slo_s: float) -> list[str]:
    header = (
        f"{'mode':9s} {'requests':>8s} {'TTFT<=' + format(slo_s, 'g') + 's':>9s} "
        f"{'p50 TTFT':>9s} {'p95 TTFT':>9s} {'p99 TTFT':>9s} {'failed':>6s} "
        f"{'replica-s':>10s} {'GPU-h':>7s} {'peak':>4s}"
    )
    rows = [header]
    for result in results:
        ttfts = [ttft for ttft in result.ttfts if ttft is not None]
        rows.append(
            f"{result.mode:9s} {len(result.ttfts):8d} {result.slo_share(slo_s):9.1%} "
            f"{quantile(ttfts, 0.5):9.2f} {quantile(ttfts, 0.95):9.2f} "
            f"{quantile(ttfts, 0.99):9.2f} {result.failed:6d} {result.replica_seconds:10.0f} "
            f"{result.replica_seconds * result.gpus_per_replica / 3600:7.2f} "
            f"{max(tick.asked for tick in result.timeline):4d}"
        )
    return rows


def timeline_rows(results: list[ModeResult], requests: list[TraceRequest]) -> list[str]:
    """Per model minute: arrivals, and each mode's replicas asked / ready at the minute's end
    and the share of that minute's requests within the SLO."""
    minutes = math.ceil(max(r.arrival_s for r in requests) / 60) + 1
    arrivals = [0] * minutes
    for request in requests:
        arrivals[int(request.arrival_s // 60)] += 1
    head = f"{'min':>3s} {'req':>5s}" + "".join(
        f"  {r.mode + ' ask/rdy/slo':>20s}" for r in results
    )
    rows = [head]
    per_minute = [result.per_minute(minutes) for result in results]
    for minute in range(minutes):
        cells = ""
        for columns in per_minute:
            asked, ready, share = columns[minute]
            cells += f"  {asked:>7d} / {ready:>2d} / {share:>5s}"
        rows.append(f"{minute:3d} {arrivals[minute]:5d}{cells}")
    return rows


def verdict(results: list[ModeResult], slo_s: float) -> list[str]:
    by_mode = {result.mode: result for result in results}
    if not {"hpa", "tiergate"} <= set(by_mode):
        return []
    hpa, ours = by_mode["hpa"], by_mode["tiergate"]
    share_gain = ours.slo_share(slo_s) - hpa.slo_share(slo_s)
    ratio = ours.replica_seconds / hpa.replica_seconds
    better_slo = share_gain > 0 and ratio <= 1.0
    cheaper = ratio <= 0.8 and share_gain >= -0.005
    met = "MET" if better_slo or cheaper else "MISSED"
    return [
        f"tiergate vs hpa: TTFT<={slo_s:g}s share {share_gain * 100:+.1f} points; "
        f"replica-seconds x{ratio:.2f} ({(1 - ratio) * 100:+.0f}% fewer)",
        f"target (more requests within the SLO at <= replica-seconds, or >= 20% fewer "
        f"replica-seconds at equal attainment): {met}",
    ]


async def main(args: argparse.Namespace) -> None:
    requests = load_requests(args)
    if not requests:
        raise SystemExit(f"{args.trace}: no request in the chosen window")
    capacity = prompt_capacity(args, requests)
    prompt_target = args.prompt_target or 0.7 * capacity
    duration = max(r.arrival_s for r in requests)
    print(
        f"trace {args.trace.name} x{args.multiplier:g}: {len(requests)} requests over "
        f"{duration / 60:.1f} min, {len(requests) / duration:.2f} req/s on average; "
        f"{args.model} on {args.tp} x {args.gpu}: {capacity:,.0f} prompt tok/s per replica "
        f"(model), tiergate target {prompt_target:,.0f}; cold start {args.cold_start:g} s; "
        f"speed x{args.speed:g}",
        flush=True,
    )
    setup = Setup(
        slo_s=args.slo,
        model=args.model,
        gpu=args.gpu,
        tp=args.tp,
        speed=args.speed,
        cold_start_s=args.cold_start,
        step_s=args.step,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        prompt_target=prompt_target,
        tail_s=args.tail,
    )
    results = []
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    for mode in args.modes.split(","):
        started = time.monotonic()
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            result = await run_mode(mode, setup, requests, session)
        results.append(result)
        print(
            f"{mode}: done in {time.monotonic() - started:.0f} s wall; emulator lag: "
            f"{result.late_sends} of {len(requests)} requests sent > 0.25 s (model) late",
            flush=True,
        )
    if args.ticks is not None:
        lines = ["mode\tt_s\tdesired\tasked\tready\treason"]
        for result in results:
            lines += [
                f"{result.mode}\t{t.t:.0f}\t{t.desired}\t{t.asked}\t{t.ready}\t{t.reason}"
                for t in result.timeline
            ]
        args.ticks.write_text("\n".join(lines) + "\n")
    print()
    print("\n".join(timeline_rows(results, requests)))
    print()
    print("\n".join(summary_rows(results, args.slo)))
    print("\n".join(verdict(results, args.slo)))


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
