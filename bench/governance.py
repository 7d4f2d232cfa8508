"""Governance benchmark: what keys, budgets, rate limits and the ledger cost a request.

Two parts, in one run, everything on 127.0.0.1:

1. Gateway overhead. Up to three ``tiergate serve --workers 1`` processes, all up at once and
   loaded one at a time, in front of the gateway bench's zero-delay upstream
   (``bench/upstream.py``), loaded by wrk with ``bench/chat.lua``:

   - ``off``: the fleet has no ``governance`` section;
   - ``on``: ``governance`` with ``keys: required``, one virtual key (its own budget and
     rate limits), a team budget and a team rate limit, all far too large to refuse, and the
     SQLite ledger in the work folder (``keyCacheMs``, ``flushMs`` at their defaults);
   - ``on+redis``: the same, with budgets and limits in a throwaway Redis
     (``tests/services.py``); left out when redis-server is missing or with ``--no-redis``.

   Every variant gets ``Authorization: Bearer <key>``. Per case (concurrency 1 and 32,
   non-streaming and streaming) each variant is warmed up, then measured in rounds whose order
   alternates (off, on, on+redis, then the reverse), so a change in the machine's load falls on
   every variant alike. Printed: req/s, p50/p99 latency and the gateway's CPU time per request,
   each beside ``off`` as a ratio, and the latency governance adds at c=1.

2. Ledger throughput. N records through the real ``SQLiteStore`` and ``PostgresStore``
   (``record()`` each, then ``flush()``), interleaved over rounds; PostgreSQL is a throwaway
   server from ``tests/services.py``. Printed: records/s, and the µs one ``record()`` call costs
   the event loop (see ``governance_ledger.py``).

Pinning: the gateways on CPU 0; upstream, wrk, Redis and this harness on CPU 1. For the ledger
part the harness (caller and SQLite writer thread) runs on CPU 0 and PostgreSQL on CPU 1.
Nothing is asserted: the harness prints. Compare ratios within one run, not across runs.

    .venv/bin/python bench/governance.py                  # about 2.5 minutes
    .venv/bin/python bench/governance.py --quick --json /tmp/governance.json
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import importlib.metadata
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import governance_ledger as ledger
import governance_report as report
import loadgen
import orjson
import procs
import targets
import upstream
from procs import BenchError

from tiergate.ledger.keys import new_key
from tiergate.ledger.records import KeyRecord
from tiergate.ledger.sqlite import SQLiteStore

GATEWAY_CPU = 0
CLIENT_CPU = 1  # upstream, wrk, Redis and the harness during part 1
DRAIN_TIMEOUT_S = 60.0
TEAM = "bench"
NEVER = 10**12  # budgets (USD) and limits (per minute) that no run can reach
TIMES = "\u00d7"  # the multiplication sign, spelt out for ruff's RUF001
VARIANTS = ("off", "on", "on+redis")


@dataclass
class Gateway:
    """One running ``tiergate serve`` variant."""

    name: str
    service: procs.Service
    port: int
    ledger_path: Path | None
    requests_sent: int = 0  # every request wrk counted, warm-ups included


@dataclass
class Sample:
    """One measured wrk run against one variant."""

    requests: int
    duration_us: int
    p50_us: int
    p99_us: int
    errors: int
    gateway_cpu_s: float


@dataclass
class Figures:
    """One variant in one case: its samples (rounds) and what they add up to."""

    samples: list[Sample] = field(default_factory=list)

    @property
    def rps(self) -> float:
        seconds = sum(s.duration_us for s in self.samples) / 1e6
        return sum(s.requests for s in self.samples) / seconds if seconds else 0.0

    @property
    def p50_ms(self) -> float:
        return statistics.median(s.p50_us for s in self.samples) / 1e3

    @property
    def p99_ms(self) -> float:
        return statistics.median(s.p99_us for s in self.samples) / 1e3

    @property
    def cpu_us_per_request(self) -> float:
        requests = sum(s.requests for s in self.samples)
        return 1e6 * sum(s.gateway_cpu_s for s in self.samples) / requests if requests else 0.0

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.samples)

    def to_json(self) -> dict[str, Any]:
        return {
            "rps": self.rps,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "gateway_cpu_us_per_request": self.cpu_us_per_request,
            "errors": self.errors,
            "samples": [vars(s) for s in self.samples],
        }


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from exc
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"need positive integers: {text!r}")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description="Governance on vs off (see the docstring).")
    parser.add_argument("--duration", type=int, help="seconds per measured round (default 4)")
    parser.add_argument("--rounds", type=int, help="measured rounds per case (default 2)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of warm-up (default 1)")
    parser.add_argument("--concurrency", type=_int_list, default=[1, 32], help="default 1,32")
    parser.add_argument("--records", type=int, help="ledger records per run (default 100000)")
    parser.add_argument("--ledger-rounds", type=int, help="runs per store (default 3)")
    parser.add_argument("--no-redis", action="store_true", help="leave out on+redis")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite ledger only")
    parser.add_argument("--quick", action="store_true", help="2 s, 1 round, 20000 records")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    quick = args.quick
    args.duration = args.duration or (2 if quick else 4)
    args.rounds = args.rounds or (1 if quick else 2)
    args.records = args.records or (20_000 if quick else 100_000)
    args.ledger_rounds = args.ledger_rounds or (1 if quick else 3)
    if not (1 <= args.duration <= 120 and 1 <= args.rounds <= 20 and 0 <= args.warmup <= 30):
        parser.error("--duration 1..120, --rounds 1..20, --warmup 0..30")
    if not (1_000 <= args.records <= 1_000_000 and 1 <= args.ledger_rounds <= 10):
        parser.error("--records 1000..1000000, --ledger-rounds 1..10")
    return args


def preflight() -> None:
    """Fail early, with the command that fixes it, when a tool is missing."""
    if (os.cpu_count() or 1) < 2:
        raise BenchError("needs at least 2 CPUs: the gateways are pinned to CPU 0, wrk to CPU 1")
    if shutil.which("taskset") is None:
        raise BenchError("taskset not found: apt-get install -y util-linux")
    if shutil.which("wrk") is None:
        raise BenchError("wrk not found: apt-get update && apt-get install -y wrk")
    if not targets.tiergate_serve_available():
        raise BenchError(f"`{targets.tiergate_bin()} serve` is not available: make setup")


# ----- the gateways ---------------------------------------------------------------------


def governance_yaml(ledger_path: Path, redis_url: str | None) -> str:
    """Keys required; a team budget and rate limit (the key brings its own); SQLite ledger."""
    text = (
        "governance:\n"
        "  keys: required\n"
        "  ledger:\n"
        f"    store: sqlite:///{ledger_path}\n"
        "  budgets:\n"
        f"    - {{team: {TEAM}, usd: {NEVER}}}\n"
        "  rateLimits:\n"
        f"    - {{team: {TEAM}, rpm: {NEVER}, tpm: {NEVER}}}\n"
    )
    return text + (f"  redis: {redis_url}\n" if redis_url else "")


def bench_key() -> tuple[str, KeyRecord]:
    """A key of team ``bench`` with a budget and rate limits that no run can reach."""
    template = KeyRecord(
        key_id="",
        key_hash="",
        name="bench",
        team=TEAM,
        project=TEAM,
        models=(),
        budget_usd=float(NEVER),
        budget_days=0,
        rpm=NEVER,
        tpm=NEVER,
        created_at=time.time() - 60,
    )
    return new_key(template)


async def _store_key(path: Path, record: KeyRecord) -> None:
    store = SQLiteStore(path)
    await store.open()
    try:
        await store.add_key(record)
    finally:
        await store.close()


def start_gateway(
    name: str, workdir: Path, upstream_port: int, record: KeyRecord | None, redis_url: str | None
) -> Gateway:
    """Write the variant's fleet (and its ledger, holding the key), start it on GATEWAY_CPU."""
    slug = name.replace("+", "-")
    spec = targets.fleet_yaml(upstream_port)
    ledger_path = None
    if record is not None:
        ledger_path = workdir / f"ledger-{slug}.db"
        asyncio.run(_store_key(ledger_path, record))
        spec += governance_yaml(ledger_path, redis_url)
    config = workdir / f"fleet-{slug}.yaml"
    config.write_text(spec)
    port = procs.free_port()
    cmd = [str(targets.tiergate_bin()), "serve", "-c", str(config)]
    cmd += ["--host", procs.HOST, "--port", str(port), "--workers", "1"]
    log = workdir / f"tiergate-{slug}.log"
    service = procs.spawn(f"tiergate {name}", cmd, cpu=GATEWAY_CPU, log_path=log)
    return Gateway(name, service, port, ledger_path)


def _post(port: int, body: dict[str, Any], key: str) -> tuple[int, bytes]:
    return procs.http_post(port, targets.CHAT_PATH, orjson.dumps(body), key)


def verify(gateway: Gateway, key: str) -> None:
    """A plain and a streamed request relay the upstream's answer; without a key, 401."""
    body: dict[str, Any] = {
        "model": targets.GATEWAY_MODEL,
        "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
        "max_tokens": 16,
    }
    status, raw = _post(gateway.port, body, key)
    if status != 200 or orjson.loads(raw)["choices"][0]["message"]["content"] != upstream.REPLY:
        raise BenchError(f"tiergate {gateway.name}: {status} {raw[:300]!r}")
    status, raw = _post(gateway.port, {**body, "stream": True}, key)
    if status != 200 or b"[DONE]" not in raw:
        raise BenchError(f"tiergate {gateway.name} (stream): {status} {raw[:300]!r}")
    gateway.requests_sent += 2
    if gateway.ledger_path is not None:
        conn = http.client.HTTPConnection(procs.HOST, gateway.port, timeout=10)
        try:
            conn.request("POST", targets.CHAT_PATH, body=orjson.dumps(body))
            keyless = conn.getresponse().status
        finally:
            conn.close()
        if keyless != 401:
            raise BenchError(f"tiergate {gateway.name} answered {keyless} without a key, not 401")
        gateway.requests_sent += 1


def _wrk(gateway: Gateway, key: str, stream: bool, concurrency: int, seconds: int) -> Sample:
    url = f"http://{procs.HOST}:{gateway.port}{targets.CHAT_PATH}"
    before = procs.cpu_seconds(gateway.service.pid)
    run = loadgen.run_wrk(
        url,
        model=targets.GATEWAY_MODEL,
        stream=stream,
        concurrency=concurrency,
        duration_s=seconds,
        cpu=CLIENT_CPU,
        api_key=key,
    )
    cpu = procs.cpu_seconds(gateway.service.pid) - before
    procs.wait_idle(gateway.service.pid, DRAIN_TIMEOUT_S)
    gateway.service.check_alive()
    result = run.result
    gateway.requests_sent += result.requests
    return Sample(
        result.requests, result.duration_us, result.p50_us, result.p99_us, result.error_count, cpu
    )


def run_cases(
    gateways: list[Gateway], key: str, args: argparse.Namespace
) -> dict[str, dict[str, Figures]]:
    """Every case: warm each variant up, then measure them in alternating order per round."""
    cases: dict[str, dict[str, Figures]] = {}
    for stream in (False, True):
        for concurrency in args.concurrency:
            label = f"{'stream' if stream else 'non-stream'} c={concurrency}"
            figures = {g.name: Figures() for g in gateways}
            print(f"  {label:<16}", end="", flush=True, file=sys.stderr)
            if args.warmup:
                for gateway in gateways:
                    _wrk(gateway, key, stream, concurrency, args.warmup)
            for round_ in range(args.rounds):
                order = gateways if round_ % 2 == 0 else gateways[::-1]
                for gateway in order:
                    sample = _wrk(gateway, key, stream, concurrency, args.duration)
                    figures[gateway.name].samples.append(sample)
            rates = "  ".join(f"{name} {f.rps:,.0f}" for name, f in figures.items())
            print(f" req/s: {rates}", file=sys.stderr)
            cases[label] = figures
    return cases


def ledger_rows(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        rows: int = connection.execute("SELECT count(*) FROM requests").fetchone()[0]
    return rows


# ----- the run --------------------------------------------------------------------------


def _version(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    lines = (done.stdout or done.stderr).splitlines()
    return lines[0].strip() if lines else "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass  # not Linux: the platform's name below is all we have
    return platform.processor() or "unknown CPU"


def _meta(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    def dist(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "-"

    return {
        "machine": f"{_cpu_model()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "python": platform.python_version(),
        "tiergate": targets.tiergate_version().replace(", version", ""),
        "wrk": _version(["wrk", "-v"]).split(" Copyright", 1)[0],
        "sqlite": sqlite3.sqlite_version,
        "asyncpg": dist("asyncpg"),
        "redis_py": dist("redis"),
        "duration_s": args.duration,
        "rounds": args.rounds,
        "warmup_s": args.warmup,
        "concurrency": args.concurrency,
        "records": args.records,
        "ledger_rounds": args.ledger_rounds,
        "workdir": str(workdir),
        "pinning": {"gateways": GATEWAY_CPU, "upstream_wrk_redis": CLIENT_CPU},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def bench_gateways(args: argparse.Namespace, workdir: Path, results: dict[str, Any]) -> None:
    """Part 1: start upstream, Redis and the variants; run every case; stop them all."""
    key, record = bench_key()
    started: list[procs.Service] = []
    redis = None
    gateways: list[Gateway] = []
    try:
        up_service, up_port = _start_upstream(workdir)
        started.append(up_service)
        up_service.wait_ready(up_port, "/health", timeout_s=30.0)
        redis_url = None
        if args.no_redis:
            results["meta"]["redis_skipped"] = "--no-redis"
        else:
            try:
                redis = ledger.start_service("start_redis", CLIENT_CPU)
                redis_url = redis.url()
                results["meta"]["redis"] = ledger.redis_version()
            except ledger.ServiceUnavailableError as exc:
                results["meta"]["redis_skipped"] = str(exc)
        for name in VARIANTS:
            if name == "on+redis" and redis_url is None:
                continue
            key_record = None if name == "off" else record
            shared = redis_url if name == "on+redis" else None
            gateway = start_gateway(name, workdir, up_port, key_record, shared)
            gateways.append(gateway)
            started.append(gateway.service)
        for gateway in gateways:
            ready_s = gateway.service.wait_ready(gateway.port, "/health", 30.0)
            verify(gateway, key)
            if redis is not None:
                _check_redis_use(gateway, redis)
            print(f"  tiergate {gateway.name} ready in {ready_s:.2f} s", file=sys.stderr)
        results["cases"] = run_cases(gateways, key, args)
    finally:
        for service in reversed(started):
            service.stop()  # SIGTERM: the gateways write their queued records first
        if redis is not None:
            redis.stop()
    results["ledger_rows"] = {
        g.name: {"rows": ledger_rows(g.ledger_path), "requests_sent": g.requests_sent}
        for g in gateways
        if g.ledger_path is not None
    }
    results["tracebacks"] = {
        g.name: g.service.log_count("Traceback (most recent call last)") for g in gateways
    }


def _check_redis_use(gateway: Gateway, redis: Any) -> None:
    """Only on+redis may have written to Redis (checked in start order: it comes last)."""
    reply = ledger.services().redis_command(redis.port, "DBSIZE")
    used = int(reply.lstrip(b":")) > 0
    if used != (gateway.name == "on+redis"):
        state = "used" if used else "did not use"
        raise BenchError(f"tiergate {gateway.name} {state} Redis: the variant is not what it says")


def _start_upstream(workdir: Path) -> tuple[procs.Service, int]:
    port = procs.free_port()
    script = Path(__file__).resolve().parent / "upstream.py"
    cmd = [sys.executable, str(script), "--host", procs.HOST, "--port", str(port)]
    return procs.spawn("upstream", cmd, cpu=CLIENT_CPU, log_path=workdir / "upstream.log"), port


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="tiergate-bench-governance-"))
    results: dict[str, Any] = {"meta": _meta(args, workdir)}
    os.sched_setaffinity(0, {CLIENT_CPU})
    print("part 1: gateway, governance off vs on", file=sys.stderr)
    bench_gateways(args, workdir, results)
    print(f"part 2: ledger, {args.records:,} records per run", file=sys.stderr)
    records = ledger.make_records(args.records)
    results["ledger"] = ledger.bench_ledgers(
        records,
        args.ledger_rounds,
        cpu=GATEWAY_CPU,
        server_cpu=CLIENT_CPU,
        workdir=workdir,
        postgres=not args.no_postgres,
    )
    return results


def main(argv: list[str] | None = None) -> int:
    """Run both parts and print the report; 1 with a message on a setup failure."""
    args = parse_args(argv)
    return procs.run_main(lambda: run_and_report(args))


def run_and_report(args: argparse.Namespace) -> int:
    preflight()
    runs = len(args.concurrency) * 2 * len(VARIANTS) * (args.rounds * args.duration + 1)
    print(f"about {runs + 20} s of load, then the ledger part", file=sys.stderr)
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
