"""Fetcher benchmark: ``tiergate fetch`` vs aria2c, a sequential download and s5cmd, on loopback.

A synthetic sharded model (``--size-gb`` GiB: four valid safetensors shards, their index,
configs and a ``tiergate-manifest.json``) is generated once under ``/tmp/tiergate-bench-fetch``
and served by nginx and by ``rclone serve s3`` on 127.0.0.1; a smaller one (``--s3-size-gb``)
is uploaded to moto's S3 server, each object with its full-object SHA256. Every way of
downloading runs into a fresh, empty DEST, the ways interleaved over ``--rounds`` (order
reversed every other round) so that a change in the machine's load falls on all of them alike:

- HTTP: ``tiergate fetch http://…/model/ DEST`` (sha256 of every file, always);
  ``aria2c -x16 -s16`` over an input file (no check; printed alone, and plus a separate
  ``sha256sum`` or ``openssl dgst -sha256`` pass over its result); ``aria2c -x16 -s16`` with
  each file's ``checksum=sha-256=…`` (aria2c checks it itself); a huggingface_hub-style
  sequential download (``fetch_sequential.py``: one file at a time, one connection, sha256
  while streaming).
- S3, against two servers: ``rclone serve s3`` (Go; reads each range from the file, as object
  stores do; the HTTP part's model) and moto's (Python; reads the whole object for every
  ranged GET; the smaller model): ``tiergate fetch s3://bench/model DEST`` (also with 50 MiB
  chunks, s5cmd's part size) vs ``s5cmd cp`` (``aws s3 cp --recursive`` when s5cmd is
  missing), alone and plus the separate passes.
- Cached restart: ``tiergate fetch`` again into the complete DEST of its last run, with and
  without ``--trust-marker`` (and ``--verify`` once), beside the start-up floor
  (``tiergate fetch --help``).

``--warmup`` rounds (1) run first and are not recorded. Before every run the page cache is
primed (see ``fresh``). Figures per way: the median wall seconds of the rounds, MB/s (10^6
bytes), CPU seconds of the client's process tree per GB (10^9 bytes;
``getrusage(RUSAGE_CHILDREN)`` deltas) and the server's (nginx's process tree; for moto, this
process, which runs it in threads). Then tiergate's throughput over the fastest anchor's with
sha256 verification on, against the issue's target (>= 90%): MET or MISSED. Nothing is
asserted.

Run from the repository root::

    .venv/bin/python bench/fetch.py                  # 2 GiB: HTTP, rclone S3; 0.5 GiB: moto
    .venv/bin/python bench/fetch.py --quick          # 0.25 / 0.125 GiB, 1 round
    .venv/bin/python bench/fetch.py --size-gb 4 --rounds 3 --no-s3 --json /tmp/fetch.json
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fetch_servers as servers
import procs
from fetch_report import Measured, Part, render_part, to_json
from procs import BenchError

BENCH = Path(__file__).resolve().parent
WORKDIR = Path("/tmp/tiergate-bench-fetch")
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-gb", type=float, default=None, help="HTTP model, GiB (2)")
    parser.add_argument("--s3-size-gb", type=float, default=None, help="S3 model, GiB (0.5)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of every way (2)")
    parser.add_argument("--connections", type=int, default=None,
                        help="tiergate --connections (default: tiergate's own, 8)")  # fmt: skip
    parser.add_argument("--chunk-mb", type=int, default=None,
                        help="tiergate --chunk-mb (default: tiergate's own, 16)")  # fmt: skip
    parser.add_argument("--warmup", type=int, default=None,
                        help="unrecorded rounds first (1; 0 with --quick)")  # fmt: skip
    parser.add_argument("--no-s3", action="store_true", help="skip the S3 parts")
    parser.add_argument("--no-http", action="store_true", help="skip the nginx part")
    parser.add_argument("--no-prime", action="store_true",
                        help="no page-cache priming before each run (see README)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="0.25 GiB (S3 0.125), 1 round")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per command")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH")
    args = parser.parse_args(argv)
    args.size_gb = args.size_gb or (0.25 if args.quick else 2.0)
    args.s3_size_gb = args.s3_size_gb or (0.125 if args.quick else 0.5)
    args.rounds = args.rounds or (1 if args.quick else 2)
    if args.warmup is None:
        args.warmup = 0 if args.quick else 1
    return args


# -- measuring --------------------------------------------------------------------------------


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_timed(
    argv: list[str], env: dict[str, str], server_cpu: Callable[[], float], timeout_s: float
) -> tuple[Measured, str]:
    """Run ``argv`` to its end: wall seconds, the CPU of its process tree and of the server
    meanwhile, and its stdout."""
    server0, cpu0, wall0 = server_cpu(), _children_cpu(), time.perf_counter()
    try:
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        wall = time.perf_counter() - wall0
        return Measured(wall, _children_cpu() - cpu0, ok=False, note="timed out"), ""
    wall = time.perf_counter() - wall0
    measured = Measured(wall, _children_cpu() - cpu0, server_cpu() - server0)
    if done.returncode != 0:
        measured.ok = False
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:]
        measured.note = f"exit {done.returncode}: {' '.join(last)[:200]}"
    return measured, done.stdout


# The separate verification pass over an anchor's result: coreutils' sha256sum (as a user
# would type it; it does not use the CPU's SHA instructions) and OpenSSL's (which does, as
# Python's hashlib, and so tiergate, does).
HASH_TOOLS = {
    "sha256sum": ["sha256sum", "--"],
    "openssl dgst": ["openssl", "dgst", "-sha256", "-r"],
}


def hash_pass(tool: str, dest: Path, model: servers.Model) -> Measured:
    """``tool`` over the downloaded files, one process per core (files spread by size),
    compared with the manifest."""
    groups: list[list[dict[str, Any]]] = [[] for _ in range(min(os.cpu_count() or 1, 8))]
    for item in sorted(model.files, key=lambda item: -int(item["size"])):
        min(groups, key=lambda group: sum(int(i["size"]) for i in group)).append(item)
    cpu0, wall0 = _children_cpu(), time.perf_counter()
    procs = [
        subprocess.Popen(
            [*HASH_TOOLS[tool], *(str(item["path"]) for item in group)],
            cwd=dest,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for group in groups
        if group
    ]
    outputs = [proc.communicate()[0] for proc in procs]
    wall = time.perf_counter() - wall0
    found = {}
    for line in "".join(outputs).splitlines():
        digest, _, path = line.partition(" ")
        found[path.lstrip(" *")] = digest
    wrong = sorted(path for path, digest in model.hashes.items() if found.get(path) != digest)
    note = f"sha256 differs or missing: {', '.join(wrong[:3])}" if wrong else ""
    return Measured(wall, _children_cpu() - cpu0, ok=not wrong, note=note)


def fresh(path: Path, prime_bytes: int) -> Path:
    """An empty directory at ``path`` (what a previous run left there is removed), the disk's
    dirty pages written back first so that no run pays for an earlier one.

    ``prime_bytes`` are then written to a file beside it and deleted: on a virtual machine
    whose idle memory goes back to the host, the first run to fill that much page cache
    pays the host's page faults (seconds of system time, varying from run to run); priming
    makes every run start from memory the guest already holds."""
    shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.sync()
    if prime_bytes:
        prime = path.parent / ".prime"
        block = bytes(8 * servers.MIB)
        with prime.open("wb") as handle:
            for _ in range(-(-prime_bytes // len(block))):
                handle.write(block)
        prime.unlink()
    return path


# -- the ways of downloading ------------------------------------------------------------------


@dataclass
class Way:
    """One way of downloading the model: how to start it, and how to read its result."""

    name: str
    check: str  # what sha256 verification it does
    argv: Callable[[Path], list[str]]
    env: dict[str, str]
    judge: Callable[[Measured, str, Path], None]  # sets ok / note / output from stdout
    hash_pass: bool = False  # also time separate sha256 passes over its result
    is_tiergate: bool = False

    @property
    def slug(self) -> str:
        """A folder name for its DEST."""
        return "".join(c if c.isalnum() else "-" for c in self.name).strip("-")


def tiergate_argv(
    args: argparse.Namespace, source: str, chunk_mb: int | None = None
) -> Callable[[Path], list[str]]:
    binary = str(Path(sys.executable).with_name("tiergate"))
    options = ["--json"]
    if args.connections:
        options += ["--connections", str(args.connections)]
    if chunk_mb or args.chunk_mb:
        options += ["--chunk-mb", str(chunk_mb or args.chunk_mb)]
    return lambda dest: [binary, "fetch", source, str(dest), *options]


def judge_tiergate(model: servers.Model) -> Callable[[Measured, str, Path], None]:
    def judge(measured: Measured, stdout: str, _dest: Path) -> None:
        summary = _summary(stdout)
        measured.output = summary
        if measured.ok and (
            summary.get("status") != "fetched"
            or summary.get("bytes") != model.bytes
            or summary.get("files_verified") != len(model.files)
        ):
            measured.ok = False
            measured.note = f"unexpected summary: {summary}"

    return judge


def _summary(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith("{") and '"summary"' in line:
            return dict(json.loads(line))
    return {}


def judge_exit_only(measured: Measured, _stdout: str, _dest: Path) -> None:
    """The tool's exit status says it all (its result is checked by the sha256sum pass)."""


def judge_sizes(model: servers.Model) -> Callable[[Measured, str, Path], None]:
    def judge(measured: Measured, _stdout: str, dest: Path) -> None:
        wrong = [
            item["path"]
            for item in model.files
            if not (dest / item["path"]).is_file()
            or (dest / item["path"]).stat().st_size != item["size"]
        ]
        if wrong and measured.ok:
            measured.ok, measured.note = False, f"missing or wrong size: {wrong[:3]}"

    return judge


def judge_sequential(measured: Measured, stdout: str, _dest: Path) -> None:
    with_lines = [line for line in stdout.splitlines() if line.startswith("{")]
    result = json.loads(with_lines[-1]) if with_lines else {}
    measured.output = result
    if measured.ok and (not result or result.get("mismatched")):
        measured.ok, measured.note = False, f"sha256 mismatch: {result}"


def client_env() -> dict[str, str]:
    """The environment of every client: no proxy between it and 127.0.0.1."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARIABLES}
    return env | {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def http_ways(args: argparse.Namespace, model: servers.Model, url: str) -> list[Way]:
    env = client_env()
    plain = WORKDIR / "aria2-input.txt"
    checked = WORKDIR / "aria2-input-sha256.txt"
    plain.write_text("".join(f"{url}{i['path']}\n  out={i['path']}\n" for i in model.files))
    checked.write_text(
        "".join(
            f"{url}{i['path']}\n  out={i['path']}\n  checksum=sha-256={i['sha256']}\n"
            for i in model.files
        )
    )

    def aria2(input_file: Path) -> Callable[[Path], list[str]]:
        return lambda dest: [
            "aria2c", "-x16", "-s16", "-i", str(input_file), "-d", str(dest),
            "--file-allocation=none", "--console-log-level=error", "--summary-interval=0",
            "--download-result=hide", "--auto-file-renaming=false", "--allow-overwrite=true",
        ]  # fmt: skip

    connections = args.connections or 8
    ways = [
        Way(f"tiergate, {connections} conn.", "built in", tiergate_argv(args, url), env,
            judge_tiergate(model), is_tiergate=True),
        Way("aria2c -x16 -s16", "none", aria2(plain), env, judge_exit_only, hash_pass=True),
        Way("aria2c -x16 -s16 checksum=", "aria2c's own", aria2(checked), env,
            judge_sizes(model)),
        Way("sequential (hf-style)", "while streaming",
            lambda dest: [sys.executable, str(BENCH / "fetch_sequential.py"), url, str(dest)],
            env, judge_sequential),
    ]  # fmt: skip
    return [way for way in ways if shutil.which(way.argv(WORKDIR)[0])]


def s3_tool() -> tuple[str, list[str]] | None:
    """s5cmd (from bench/.venv-s5cmd or PATH), else the AWS CLI: its name and argv prefix."""
    for candidate in (BENCH / ".venv-s5cmd" / "bin" / "s5cmd", shutil.which("s5cmd")):
        if candidate and Path(candidate).is_file():
            return "s5cmd", [str(candidate)]
    aws = shutil.which("aws")
    return ("aws s3 cp", [aws]) if aws else None


# s5cmd's default part size: each of its ranged GETs asks for this much.
S5CMD_PART_MB = 50


def s3_ways(
    args: argparse.Namespace,
    model: servers.Model,
    endpoint: str,
    tool: tuple[str, list[str]] | None,
) -> list[Way]:
    env = client_env() | servers.s3_env(endpoint, WORKDIR)
    source = f"s3://{servers.BUCKET}/{servers.PREFIX}"
    connections = args.connections or 8
    ways = [
        Way(f"tiergate, {connections} conn.", "built in", tiergate_argv(args, source), env,
            judge_tiergate(model), is_tiergate=True),
        # moto reads a whole object for every ranged GET: with s5cmd's part size tiergate
        # asks for as many ranges as s5cmd does, which shows what that costs here.
        Way(f"tiergate, {connections} conn., {S5CMD_PART_MB} MiB chunks", "built in",
            tiergate_argv(args, source, chunk_mb=S5CMD_PART_MB), env, judge_tiergate(model),
            is_tiergate=True),
    ]  # fmt: skip
    if tool is None:
        return ways
    name, prefix = tool
    manifest = "tiergate-manifest.json"
    if name == "s5cmd":
        argv = lambda dest: [  # noqa: E731
            *prefix, "--endpoint-url", endpoint, "cp", "--exclude", manifest,
            f"{source}/*", f"{dest}/",
        ]  # fmt: skip
        label = "s5cmd cp"
    else:
        argv = lambda dest: [  # noqa: E731
            *prefix, "--endpoint-url", endpoint, "s3", "cp", "--recursive", "--only-show-errors",
            "--exclude", manifest, source, str(dest),
        ]  # fmt: skip
        label = "aws s3 cp --recursive"
    return [*ways, Way(label, "none", argv, env, judge_exit_only, hash_pass=True)]


def _version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (
        (done.stdout or done.stderr).strip().splitlines()[0] if done.stdout or done.stderr else "?"
    )


# -- running a part ---------------------------------------------------------------------------


def run_part(
    part: Part,
    ways: list[Way],
    model: servers.Model,
    args: argparse.Namespace,
    server_cpu: Callable[[], float],
) -> None:
    """Every way into a fresh DEST, ``args.warmup`` unrecorded rounds first, then
    ``args.rounds`` recorded ones (order reversed every other round); then the cached
    restart of tiergate's last DEST."""
    dest_root = WORKDIR / "dest" / re.sub(r"[^A-Za-z0-9]+", "-", part.name).strip("-")
    tiergate = next((way for way in ways if way.is_tiergate), None)
    kept: Path | None = None
    for round_index in range(-args.warmup, args.rounds):
        order = ways if round_index % 2 == 0 else ways[::-1]
        label = "warm-up" if round_index < 0 else f"round {round_index + 1}"
        for way in order:
            dest = fresh(dest_root / way.slug, 0 if args.no_prime else model.bytes)
            measured, stdout = run_timed(way.argv(dest), way.env, server_cpu, args.timeout)
            way.judge(measured, stdout, dest)
            status = "ok" if measured.ok else f"FAILED ({measured.note})"
            print(f"  {part.name} {label}: {way.name}: {measured.wall_s:.2f} s {status}",
                  file=sys.stderr)  # fmt: skip
            if round_index >= 0:
                part.runs.setdefault(way.name, []).append(measured)
                part.checks[way.name] = way.check
                for tool in HASH_TOOLS if way.hash_pass else ():
                    passes = part.hash_runs.setdefault(way.name, {}).setdefault(tool, [])
                    passes.append(hash_pass(tool, dest, model))
            if way is tiergate and measured.ok:
                kept = dest  # the cached-restart runs use it
            else:
                shutil.rmtree(dest, ignore_errors=True)
    if kept is not None and tiergate is not None:
        cached_restart(part, tiergate, kept, args, server_cpu)
    shutil.rmtree(dest_root, ignore_errors=True)


def cached_restart(
    part: Part, way: Way, dest: Path, args: argparse.Namespace, server_cpu: Callable[[], float]
) -> None:
    """``tiergate fetch`` into a complete DEST: the median of 3, plus one ``--verify``."""
    argv = way.argv(dest)
    cases = {
        "start-up floor (tiergate fetch --help)": ([argv[0], "fetch", "--help"], 3),
        "complete DEST (lists the source)": (argv, 3),
        "complete DEST, --trust-marker": ([*argv, "--trust-marker"], 3),
        "complete DEST, --verify (re-hash)": ([*argv, "--verify"], 1),
    }
    for name, (command, repeat) in cases.items():
        runs = []
        for _ in range(repeat):
            measured, stdout = run_timed(command, way.env, server_cpu, args.timeout)
            if "--help" not in command:
                measured.output = _summary(stdout)
                if measured.output.get("status") != "cached":
                    measured.ok = False
                    measured.note = measured.note or f"status {measured.output.get('status')}"
            runs.append(measured)
        runs.sort(key=lambda run: run.wall_s)
        part.restart[name] = runs[len(runs) // 2]


# -- main -------------------------------------------------------------------------------------


def machine_info(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nginx": servers.nginx_version() if shutil.which("nginx") else None,
        "aria2c": _version(["aria2c", "--version"]) if shutil.which("aria2c") else None,
        "rounds": args.rounds,
    }


def run_benchmark(args: argparse.Namespace) -> list[Part]:
    WORKDIR.mkdir(parents=True, exist_ok=True)
    with (WORKDIR / ".lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # Two runs would share the work folder and the machine: both would be wrong.
            raise BenchError(f"another bench/fetch.py run is using {WORKDIR}") from None
        return _run_parts(args)


def _run_parts(args: argparse.Namespace) -> list[Part]:
    parts: list[Part] = []
    if not shutil.which("nginx"):
        raise BenchError("nginx not found: apt-get install -y nginx aria2")
    model, reused = servers.prepare_model(WORKDIR, args.size_gb)
    print(f"model {model.root} ({'reused' if reused else 'generated'})", file=sys.stderr)
    servers.warm_page_cache(model)
    if not args.no_http:
        with servers.nginx(WORKDIR, model) as web:
            part = Part("HTTP", f"{servers.nginx_version()} on {web.url}", model.bytes,
                        len(model.files))  # fmt: skip
            ways = http_ways(args, model, web.url)
            if not any(way.name.startswith("aria2c") for way in ways):
                part.notes.append(
                    "aria2c not found (apt-get install -y aria2): its rows are missing"
                )
            run_part(part, ways, model, args, web.cpu_seconds)
            parts.append(part)
    if args.no_s3:
        return parts
    tool = s3_tool()
    rclone = servers.rclone_binary(BENCH)
    if rclone is None:
        print("rclone (with serve s3) not found: its S3 part is skipped (see README)",
              file=sys.stderr)  # fmt: skip
    else:
        # The HTTP part's model: a Go server reading ranges from files is as quick as nginx.
        with servers.rclone_s3(rclone, WORKDIR, model) as server:
            part = Part("S3 (rclone)", f"rclone serve s3 ({server.version}) on {server.endpoint}",
                        model.bytes, len(model.files))  # fmt: skip
            part.notes.append(
                "rclone serve s3 reads each range from the file, as object stores do; it has no "
                "full-object checksums, so tiergate takes the sha256 from tiergate-manifest.json"
            )
            _note_tool(part, tool)
            ways = s3_ways(args, model, server.endpoint, tool)
            run_part(part, ways, model, args, server.cpu_seconds)
            parts.append(part)
    s3_model, reused = servers.prepare_model(WORKDIR, args.s3_size_gb)
    print(f"model {s3_model.root} ({'reused' if reused else 'generated'})", file=sys.stderr)
    with servers.moto_s3(s3_model) as (endpoint, with_sha):
        part = Part("S3 (moto)", f"moto server (in this process) on {endpoint}", s3_model.bytes,
                    len(s3_model.files))  # fmt: skip
        files = len(s3_model.files)
        rest = " (tiergate checks the rest against the manifest)" if with_sha < files else ""
        part.notes += [
            f"{with_sha} of {files} objects report a full-object SHA256{rest}",
            "moto reads the whole object for every ranged GET, under a lock per object, in "
            "one Python process: the server, more than the clients, bounds these figures "
            "(see README)",
        ]
        _note_tool(part, tool)
        ways = s3_ways(args, s3_model, endpoint, tool)
        run_part(part, ways, s3_model, args, _self_cpu)
        parts.append(part)
    return parts


def _note_tool(part: Part, tool: tuple[str, list[str]] | None) -> None:
    if tool is None:
        part.notes.append("neither s5cmd nor aws found: S3 anchor missing (see README)")
    elif tool[0] == "s5cmd":
        version = _version([*tool[1], "version"])
        part.notes.append(f"anchor: s5cmd {version} ({tool[1][0]}), its default settings")
    else:
        part.notes.append("s5cmd not found: the anchor is aws s3 cp (see README)")


def main(argv: list[str] | None = None) -> int:
    """Run every part and print the report; 1 with a message on a setup failure."""
    args = parse_args(argv)
    return procs.run_main(lambda: run_and_report(args))


def run_and_report(args: argparse.Namespace) -> int:
    machine = machine_info(args)
    parts = run_benchmark(args)
    print(
        f"machine: {machine['cpus']} CPUs, Linux {machine['kernel']}; {machine['nginx']}, "
        f"{machine['aria2c']}; servers and clients share the machine, and the model is served "
        "from the page cache"
    )
    for part in parts:
        print()
        server = {"HTTP": "nginx", "S3 (rclone)": "rclone"}.get(part.name, "moto")
        print("\n".join(render_part(part, server)))
    if args.json:
        args.json.write_text(json.dumps(to_json(parts, machine), indent=2) + "\n")
        print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
