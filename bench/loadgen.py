"""Run wrk (pinned to one CPU) with ``bench/chat.lua`` and parse its ``BENCH_RESULT`` line."""

from __future__ import annotations

import os
import resource
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import procs

LUA_SCRIPT = Path(__file__).resolve().parent / "chat.lua"
RESULT_PREFIX = "BENCH_RESULT "
WRK_TIMEOUT = "10s"
SAMPLE_INTERVAL_S = 0.05


@dataclass
class WrkResult:
    """What one wrk run measured; latencies in microseconds."""

    requests: int
    duration_us: int
    bytes: int
    errors: dict[str, int]
    p50_us: int
    p90_us: int
    p99_us: int
    p999_us: int
    mean_us: int
    max_us: int

    @property
    def rps(self) -> float:
        return self.requests / (self.duration_us / 1e6) if self.duration_us else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


@dataclass
class LoadRun:
    """A wrk run plus what the harness watched while it ran."""

    result: WrkResult
    cpu_percent: dict[str, float] = field(default_factory=dict)
    rss_peak_kib: dict[str, int] = field(default_factory=dict)
    listen_overflows: int = 0


def parse_result(output: str) -> WrkResult:
    """The ``BENCH_RESULT key=value ...`` line that chat.lua's ``done()`` prints."""
    for line in output.splitlines():
        if line.startswith(RESULT_PREFIX):
            values = dict(item.split("=", 1) for item in line[len(RESULT_PREFIX) :].split())
            numbers = {key: int(float(value)) for key, value in values.items()}
            error_keys = ("connect", "read", "write", "status", "timeout")
            return WrkResult(
                requests=numbers["requests"],
                duration_us=numbers["duration_us"],
                bytes=numbers["bytes"],
                errors={key: numbers[key] for key in error_keys},
                p50_us=numbers["p50_us"],
                p90_us=numbers["p90_us"],
                p99_us=numbers["p99_us"],
                p999_us=numbers["p999_us"],
                mean_us=numbers["mean_us"],
                max_us=numbers["max_us"],
            )
    raise procs.BenchError(f"wrk printed no {RESULT_PREFIX.strip()} line:\n{output[-2000:]}")


def wrk_command(url: str, concurrency: int, duration_s: int, cpu: int) -> list[str]:
    """``taskset -c CPU wrk -t1 -cC -dDs --latency -s chat.lua URL``."""
    return [
        "taskset",
        "-c",
        str(cpu),
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{duration_s}s",
        "--latency",
        "--timeout",
        WRK_TIMEOUT,
        "-s",
        str(LUA_SCRIPT),
        url,
    ]


class _Sampler:
    """Samples the RSS of some process trees every 50 ms while a run lasts (bounded by it)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak: dict[str, int] = dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], procs.rss_kib(pid))

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    url: str,
    *,
    model: str,
    stream: bool,
    concurrency: int,
    duration_s: int,
    cpu: int,
    watch: dict[str, int] | None = None,
    api_key: str = "",
) -> LoadRun:
    """One wrk run; ``watch`` names process trees whose CPU share and peak RSS to record."""
    watch = watch or {}
    env = {**os.environ, "BENCH_MODEL": model, "BENCH_STREAM": "1" if stream else "0"}
    if api_key:
        env["BENCH_API_KEY"] = api_key
    cmd = wrk_command(url, concurrency, duration_s, cpu)
    cpu_before = {name: procs.cpu_seconds(pid) for name, pid in watch.items()}
    wrk_before = _children_cpu_s()
    overflows_before = procs.listen_overflows()
    started = time.monotonic()
    with _Sampler(watch) as sampler:
        try:
            done = subprocess.run(
                cmd, env=env, capture_output=True, text=True, timeout=duration_s + 60, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise procs.BenchError(f"wrk ran past {duration_s + 60} s: {cmd}") from exc
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise procs.BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    cpu_percent = {
        name: 100.0 * (procs.cpu_seconds(pid) - cpu_before[name]) / wall
        for name, pid in watch.items()
    }
    cpu_percent["wrk"] = 100.0 * (_children_cpu_s() - wrk_before) / wall
    overflows = procs.listen_overflows() - overflows_before
    return LoadRun(parse_result(done.stdout), cpu_percent, dict(sampler.peak), overflows)
