"""Gateway benchmark: direct-to-upstream vs through tiergate vs through the LiteLLM proxy.

What it measures, in one run, against one shared zero-delay OpenAI-compatible upstream
(``bench/upstream.py``, aiohttp + uvloop), with wrk (``bench/chat.lua``) as load generator:

- throughput (req/s) and latency p50/p99 for every case: concurrency 1, 32 and 256 (``-t1``),
  non-streaming and streaming (a 20-chunk SSE answer), for each target: ``direct`` (wrk straight
  to the upstream), ``tiergate`` (``tiergate serve --workers 1``) and ``litellm`` (the LiteLLM
  proxy, one worker), plus the ratio tiergate/LiteLLM;
- added latency at c=1 (gateway p50/p99 minus direct) and added time per streamed chunk
  ((streaming p50 through the gateway - streaming p50 direct) / 20);
- each gateway's time to ready (spawn until its health endpoint answers 200, polled every
  5 ms) and its RSS idle and under load (VmRSS / VmHWM of its process tree);
- CPU use of gateway, upstream and wrk per case, to show which core saturates.

Pinning: the gateway runs on CPU 0; the upstream and wrk on CPU 1. The direct case therefore
has upstream and wrk sharing one core. Figures depend on the machine: compare them as ratios
within one run. The issue's targets are printed with PASS/MISS, never asserted.

Run (from the repository root; wrk from Debian, LiteLLM in its own bench-only venv):

    apt-get install -y wrk
    bash bench/setup_litellm.sh
    .venv/bin/python bench/gateway.py                      # 10 s per case, all targets
    .venv/bin/python bench/gateway.py --quick --only direct,litellm --json /tmp/bench.json
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import loadgen
import orjson
import procs
import report
import targets
from procs import BenchError
from report import BenchResults, CaseResult, ServiceStats

DRAIN_TIMEOUT_S = 120.0
GATEWAY_CPU = 0
CLIENT_CPU = 1  # upstream, wrk and the harness itself


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from exc
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"need positive integers: {text!r}")
    return values


def _target_list(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [n for n in names if n not in targets.ALL_TARGETS]
    if not names or unknown:
        choices = ",".join(targets.ALL_TARGETS)
        raise argparse.ArgumentTypeError(f"unknown target(s) {unknown}; choose from {choices}")
    return [n for n in targets.ALL_TARGETS if n in names]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description="Direct vs tiergate vs LiteLLM on one zero-delay upstream (see the docstring)."
    )
    parser.add_argument("--duration", type=int, help="seconds per measured case (default 10)")
    parser.add_argument("--warmup", type=int, help="seconds of warm-up per case (default 2)")
    parser.add_argument("--quick", action="store_true", help="3 s cases, 1 s warm-up")
    parser.add_argument(
        "--only",
        type=_target_list,
        default=list(targets.ALL_TARGETS),
        help="targets to run, comma-separated (default direct,tiergate,litellm)",
    )
    parser.add_argument(
        "--concurrency", type=_int_list, default=[1, 32, 256], help="default 1,32,256"
    )
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = 3 if args.quick else 10
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    if args.duration < 1 or args.duration > 600 or args.warmup < 0 or args.warmup > 60:
        parser.error("--duration must be 1..600 and --warmup 0..60 seconds")
    return args


def preflight(only: list[str]) -> None:
    """Fail early, with the command that fixes it, when a tool is missing."""
    if (os.cpu_count() or 1) < 2:
        raise BenchError("needs at least 2 CPUs: the gateway is pinned to CPU 0, wrk to CPU 1")
    if shutil.which("taskset") is None:
        raise BenchError("taskset not found: apt-get install -y util-linux")
    if shutil.which("wrk") is None:
        raise BenchError("wrk not found: apt-get update && apt-get install -y wrk")
    if "litellm" in only and not targets.LITELLM_BIN.exists():
        raise BenchError(
            f"LiteLLM venv missing ({targets.LITELLM_BIN}): run `{targets.LITELLM_SETUP}`"
            " or leave litellm out with --only"
        )
    if "tiergate" in only and not targets.tiergate_serve_available():
        raise BenchError(
            f"`{targets.tiergate_bin()} serve` is not available: install the project"
            " (make setup) or leave tiergate out with --only direct,litellm"
        )


def _wrk_version() -> str:
    done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10, check=False)
    lines = (done.stdout or done.stderr).splitlines()
    return lines[0].strip() if lines else "unknown"


def _meta(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    return {
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "concurrency": args.concurrency,
        "targets": args.only,
        "workdir": str(workdir),
        "pinning": {"gateway": GATEWAY_CPU, "upstream": CLIENT_CPU, "wrk": CLIENT_CPU},
        "stream_chunks": 20,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "wrk": _wrk_version(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def start_upstream(workdir: Path) -> tuple[procs.Service, int]:
    """The shared zero-delay upstream, pinned to the client CPU."""
    port = procs.free_port()
    script = Path(__file__).resolve().parent / "upstream.py"
    cmd = [sys.executable, str(script), "--host", procs.HOST, "--port", str(port)]
    service = procs.spawn("upstream", cmd, cpu=CLIENT_CPU, log_path=workdir / "upstream.log")
    return service, port


def start_gateway(name: str, workdir: Path, upstream_port: int) -> tuple[procs.Service, int]:
    if name == "tiergate":
        return targets.start_tiergate(workdir, upstream_port, GATEWAY_CPU)
    if name == "bare-aiohttp":
        return targets.start_bare(workdir, upstream_port, GATEWAY_CPU)
    return targets.start_litellm(workdir, upstream_port, GATEWAY_CPU)


def run_cases(
    target: targets.Target,
    port: int,
    args: argparse.Namespace,
    watch: dict[str, int],
    gateway: procs.Service | None,
) -> list[CaseResult]:
    """Every (stream, concurrency) case against one target, each after a warm-up."""
    url = f"http://{procs.HOST}:{port}{targets.CHAT_PATH}"
    # The process that may still be busy with a previous run's requests.
    busy_pid = watch.get("gateway", watch["upstream"])
    cases: list[CaseResult] = []
    for stream in (False, True):
        for concurrency in args.concurrency:
            label = report.case_label(stream, concurrency)
            load: dict[str, Any] = {
                "model": target.model,
                "stream": stream,
                "concurrency": concurrency,
                "cpu": CLIENT_CPU,
                "api_key": targets.API_KEY,
            }
            print(f"  {target.name:<9} {label:<16} ...", end="", flush=True, file=sys.stderr)
            if args.warmup:
                loadgen.run_wrk(url, duration_s=args.warmup, **load)
            drained_s = procs.wait_idle(busy_pid, DRAIN_TIMEOUT_S)
            run = loadgen.run_wrk(url, duration_s=args.duration, watch=watch, **load)
            drained_s += procs.wait_idle(busy_pid, DRAIN_TIMEOUT_S)
            if gateway is not None:
                gateway.check_alive()
            errors = f", {run.result.error_count} errors" if run.result.error_count else ""
            drained = f", waited {drained_s:.1f} s for backlog to drain" if drained_s > 1.5 else ""
            print(f" {run.result.rps:,.0f} req/s{errors}{drained}", file=sys.stderr)
            cases.append(CaseResult(target.name, stream, concurrency, run))
    return cases


def bench_gateway(
    name: str,
    workdir: Path,
    upstream: tuple[procs.Service, int],
    args: argparse.Namespace,
    results: BenchResults,
) -> None:
    """Start one gateway, measure ready and idle RSS, verify it relays, run its cases, stop."""
    target = targets.ALL_TARGETS[name]
    upstream_service, upstream_port = upstream
    service, port = start_gateway(name, workdir, upstream_port)
    try:
        ready_s = service.wait_ready(port, target.ready_path, target.ready_timeout_s)
        stats = ServiceStats(ready_s=ready_s, rss_idle_kib=procs.rss_kib(service.pid))
        print(f"  {name:<9} ready in {ready_s:.3f} s", file=sys.stderr)
        stats.verified = targets.verify(target, port)
        watch = {"gateway": service.pid, "upstream": upstream_service.pid}
        cases = run_cases(target, port, args, watch, service)
        stats.rss_peak_sampled_kib = max(
            [stats.rss_idle_kib, *(c.run.rss_peak_kib.get("gateway", 0) for c in cases)]
        )
        stats.hwm_kib = procs.hwm_kib(service.pid)
        versions = {"tiergate": targets.tiergate_version, "litellm": targets.litellm_version}
        stats.version = versions[name]() if name in versions else "aiohttp + uvloop"
        results.services[name] = stats
        results.cases.extend(cases)
    finally:
        service.stop()
    stats.log_tracebacks = service.log_count("Traceback (most recent call last)")


def bench_direct(
    upstream: tuple[procs.Service, int], args: argparse.Namespace, results: BenchResults
) -> None:
    """wrk straight to the upstream (both on CPU 1)."""
    service, port = upstream
    targets.verify(targets.DIRECT, port)
    watch = {"upstream": service.pid}
    results.cases.extend(run_cases(targets.DIRECT, port, args, watch, None))


def run_benchmark(args: argparse.Namespace) -> BenchResults:
    """Start the upstream, then bench each selected target in turn; always clean up."""
    workdir = Path(tempfile.mkdtemp(prefix="tiergate-bench-"))
    results = BenchResults(meta=_meta(args, workdir))
    upstream_service, upstream_port = start_upstream(workdir)
    try:
        upstream_service.wait_ready(upstream_port, "/health", timeout_s=30.0)
        upstream = (upstream_service, upstream_port)
        for name in args.only:
            try:
                if name == "direct":
                    bench_direct(upstream, args, results)
                else:
                    bench_gateway(name, workdir, upstream, args, results)
            except BenchError as exc:
                # One broken target must not cost the others' figures.
                print(f"\n  {name} failed: {exc}", file=sys.stderr)
                results.meta.setdefault("failures", {})[name] = str(exc)
            upstream_service.check_alive()
    finally:
        upstream_service.stop()
    results.meta["upstream_log_tracebacks"] = upstream_service.log_count("Traceback (most recent")
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the report; 1 with a message on a setup failure."""
    args = parse_args(argv)
    return procs.run_main(lambda: run_and_report(args))


def run_and_report(args: argparse.Namespace) -> int:
    preflight(args.only)
    # Keep the harness itself (mostly asleep) off the gateway's core.
    os.sched_setaffinity(0, {CLIENT_CPU})
    cases = len(args.concurrency) * 2 * len(args.only)
    estimate = cases * (args.duration + args.warmup)
    print(f"{cases} cases, about {estimate} s of load plus start-up", file=sys.stderr)
    results = run_benchmark(args)
    print(report.render(results))
    if args.json:
        args.json.write_bytes(
            orjson.dumps(report.to_json(results), option=orjson.OPT_INDENT_2) + b"\n"
        )
        print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
