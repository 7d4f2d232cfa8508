"""Emulator benchmark: CPU cost per emulated token, and how faithfully replicas keep model time.

Starts ``--replicas`` (20) emulated replicas of Llama-3.1-8B-Instruct on an H100 in this process
(``--speed`` 1: real time) and drives them from a separate load-generator process (this script
with ``--loadgen``, so that its CPU is not counted) with an open-loop Poisson stream of
``--rate`` (50) streaming chat requests per second in total, round-robin over the replicas, for
``--duration`` (20) seconds; at most ``--max-in-flight`` requests are outstanding (arrivals
beyond it are counted as dropped, not queued in the client).

It prints:

- the emulator process's CPU seconds (user + system, ``getrusage``) per emulated token, and its
  CPU use as a share of one core, over the load period;
- for each replica: requests served, mean TTFT and mean ITL as the client observed them (wall
  seconds; at speed 1 these are model seconds), the same as the replica's own histograms say
  (``vllm:time_to_first_token_seconds`` and ``vllm:inter_token_latency_seconds`` sum/count,
  which hold the performance model's step times for the batches the replica actually ran), the
  ratio observed/model, and how many steps had to catch up with the wall clock.

A ratio near 1 means the emulator delivers what the model says in real time; a ratio above 1
is emulator overhead (CPU, event-loop delay) plus the client's own. Nothing is asserted.

Run from the repository root::

    .venv/bin/python bench/emulator.py
    .venv/bin/python bench/emulator.py --replicas 5 --rate 20 --duration 10 --max-tokens 128
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import subprocess
import sys
import time
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--replicas", type=int, default=20)
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second, in total")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of arrivals")
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--gpu", default="H100")
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--max-in-flight", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--loadgen", nargs="+", metavar="URL", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# -- load generator (child process) ---------------------------------------------------------


async def one_request(
    http: aiohttp.ClientSession, url: str, args: argparse.Namespace
) -> dict[str, Any]:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": args.max_tokens,
        "stream": True,
    }
    headers = {"x-emulator-prompt-tokens": str(args.prompt_tokens)}
    sent = time.monotonic()
    first = last = None
    tokens = 0
    async with http.post(f"{url}/v1/chat/completions", json=body, headers=headers) as response:
        if response.status != 200:
            return {"url": url, "error": response.status}
        async for line in response.content:
            if not line.startswith(b'data: {"id') or b'"content":"' not in line:
                continue
            if line.find(b'"content":""') != -1:
                continue  # the role chunk
            last = time.monotonic()
            if first is None:
                first = last
            tokens += 1
    return {
        "url": url,
        "ttft": (first or sent) - sent,
        "decode": (last or sent) - (first or sent),
        "tokens": tokens,
    }


async def generate(urls: list[str], args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    results: list[dict[str, Any]] = []
    dropped = 0
    in_flight: set[asyncio.Task[None]] = set()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=600)
    ) as http:

        async def run(url: str) -> None:
            try:
                results.append(await one_request(http, url, args))
            except aiohttp.ClientError as exc:
                results.append({"url": url, "error": type(exc).__name__})

        start = time.monotonic()
        at = 0.0
        index = 0
        while at < args.duration:
            delay = start + at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(in_flight) >= args.max_in_flight:
                dropped += 1
            else:
                task = asyncio.create_task(run(urls[index % len(urls)]))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            index += 1
            at += rng.expovariate(args.rate)
        if in_flight:
            await asyncio.wait(in_flight)
    return {"results": results, "dropped": dropped, "sent": index - dropped}


# -- emulator (this process) ----------------------------------------------------------------


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def sample(text: str, name: str) -> float:
    return sum(
        s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name
    )


async def bench(args: argparse.Namespace) -> None:
    from tiergate.emulator import EmulatorCluster, EmulatorConfig  # noqa: PLC0415

    config = EmulatorConfig(MODEL, args.gpu, speed=args.speed)
    async with EmulatorCluster(config, args.replicas) as cluster:
        origins = cluster.origins
        command = [sys.executable, __file__, "--loadgen", *origins]
        for option in ("rate", "duration", "prompt_tokens", "max_tokens", "max_in_flight", "seed"):
            command += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
        cpu0, wall0 = cpu_seconds(), time.monotonic()
        child = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE)
        output, _ = await child.communicate()
        cpu, wall = cpu_seconds() - cpu0, time.monotonic() - wall0
        load = json.loads(output)
        texts = [replica.engine.metrics.exposition().decode() for replica in cluster.replicas]
        catch_ups = [replica.engine.catch_ups for replica in cluster.replicas]
    child_usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    tokens = sum(sample(text, "vllm:generation_tokens_total") for text in texts)
    results = load["results"]
    errors = [r for r in results if "error" in r]
    sent, duration = load["sent"], args.duration
    print(f"emulator: {args.replicas} x {MODEL} on {args.gpu}, speed {args.speed:g}")
    print(
        f"load: {sent} requests over {duration:g} s ({sent / duration:.1f}/s), "
        f"{load['dropped']} dropped, {len(errors)} failed; "
        f"prompt {args.prompt_tokens} tokens, max_tokens {args.max_tokens}"
    )
    print(f"wall {wall:.1f} s; emulated tokens {tokens:.0f} ({tokens / wall:.0f}/s)")
    print(
        f"emulator CPU {cpu:.2f} s = {cpu / wall:.0%} of one core; "
        f"{cpu / max(tokens, 1) * 1e6:.1f} µs CPU per emulated token"
    )
    loadgen_cpu = child_usage.ru_utime + child_usage.ru_stime
    print(f"load generator CPU {loadgen_cpu:.2f} s (not counted above)")
    print()
    columns = ("replica", "reqs", "TTFT obs", "model", "ratio", "ITL obs", "model", "ratio")
    print(" ".join(f"{c:>9}" for c in (*columns, "catch-ups")))
    for index, (origin, text) in enumerate(zip(origins, texts, strict=True)):
        mine = [r for r in results if r["url"] == origin and "error" not in r]
        if not mine:
            print(f"{index:>9} {0:>9}")
            continue
        ttft_obs = sum(r["ttft"] for r in mine) / len(mine) * args.speed
        decode_tokens = sum(max(r["tokens"] - 1, 0) for r in mine)
        itl_obs = sum(r["decode"] for r in mine) / max(decode_tokens, 1) * args.speed
        ttft_model = mean(text, "vllm:time_to_first_token_seconds")
        itl_model = mean(text, "vllm:inter_token_latency_seconds")
        cells = (
            f"{ttft_obs * 1e3:.1f}ms",
            f"{ttft_model * 1e3:.1f}ms",
            f"{ttft_obs / ttft_model:.2f}",
            f"{itl_obs * 1e3:.2f}ms",
            f"{itl_model * 1e3:.2f}ms",
            f"{itl_obs / itl_model:.2f}",
        )
        print(
            " ".join(f"{c:>9}" for c in (str(index), str(len(mine)), *cells, str(catch_ups[index])))
        )


def mean(text: str, histogram: str) -> float:
    """A histogram's mean: sum over count."""
    return sample(text, f"{histogram}_sum") / max(sample(text, f"{histogram}_count"), 1)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up
    except ImportError:
        runner = asyncio.Runner()
    else:
        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    with runner:
        if args.loadgen:
            print(json.dumps(runner.run(generate(args.loadgen, args))))
        else:
            runner.run(bench(args))


if __name__ == "__main__":
    main()
