"""Bedrock provider benchmark: translation cost per request and per streamed event.

What it measures, on one core, with no network (``time.perf_counter_ns``; median and p90 in µs):

- request translation, ``tiergate.providers.converse.to_converse``, on a small one-turn chat and
  on a typical agent request (system prompt, 11 turns with 2 tool calls and their results,
  3 tools with JSON schemas, ``max_tokens``/``temperature``/``stop``);
- the whole preparation the provider does before the network: ``to_converse`` +
  ``orjson.dumps`` + SigV4 signing (``tiergate.providers.aws_auth.Signer.sign``, static
  credentials from the environment), and the signing alone;
- response translation as ``BedrockProvider.send`` does it: ``orjson.loads`` + ``from_converse``
  + ``orjson.dumps``, on a text answer and on a tool-call answer;
- a ConverseStream answer (366 events: 300 text deltas, a tool call in 60 input fragments,
  payloads padded with ``"p"`` like Bedrock's) fed in 1-4 KiB chunks through the provider's own
  ``_EventStream`` (botocore's ``EventStreamBuffer``, ``orjson.loads``, ``ChunkWriter``) to
  OpenAI SSE bytes, per event; and, as a breakdown, the frame decoding + JSON parsing alone.

Anchors, measured in the same run on the same inputs:

- ``botocore``: what a boto3-based gateway pays: botocore's ``EventStream`` with the rest-json
  event parser and ConverseStream's output shape (it stops at Python dicts: no OpenAI output),
  and bare ``SigV4Auth.add_auth`` for the signing row;
- ``LiteLLM`` (if ``bench/.venv-litellm`` exists: ``bash bench/setup_litellm.sh``): its own
  Converse transformations and stream decoder on the same request bodies, answers and stream
  bytes, timed by ``bench/litellm_bedrock.py`` running in that venv.

The machine is shared and noisy, so every side is sampled in turn: the samples are taken in
rounds, and in each round every measurement runs a batch on every side (after a short warm-up)
before the next one starts; a drift in the machine's load then falls on all sides alike. The
ratio columns are tiergate's median divided by the anchor's (below 1: tiergate is cheaper).
Compare ratios within one run, not figures across machines. Nothing is asserted.

The inputs are built by ``bench/bedrock_inputs.py``.

Run (from the repository root; about 40 s, most of it LiteLLM's imports and transformations):

    .venv/bin/python bench/bedrock.py
    .venv/bin/python bench/bedrock.py --quick --json /tmp/bedrock.json
    .venv/bin/python bench/bedrock.py --repeat 5000 --no-litellm
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Protocol, cast
from urllib.parse import quote

import botocore
import orjson
from bedrock_inputs import Fixtures, Json, build_fixtures
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStream, EventStreamBuffer
from botocore.model import StructureShape
from botocore.parsers import EventStreamJSONParser
from botocore.session import Session

import tiergate
from tiergate.providers.aws_auth import Signer
from tiergate.providers.bedrock import _EventStream
from tiergate.providers.converse import from_converse, to_converse
from tiergate.providers.converse_stream import ChunkWriter

ROOT = Path(__file__).resolve().parent.parent
LITELLM_PYTHON = ROOT / "bench" / ".venv-litellm" / "bin" / "python"
LITELLM_SCRIPT = ROOT / "bench" / "litellm_bedrock.py"

MODEL_ID = "us.anthropic.claude-sonnet-4-20250514-v1:0"
REGION = "us-east-1"
URL = f"https://bedrock-runtime.{REGION}.amazonaws.com/model/{quote(MODEL_ID, safe='')}/converse"
DEFAULT_REPEAT = 1000  # samples per request/response figure; streams take a tenth of that
QUICK_DIVISOR = 5
ROUNDS = 5  # every figure's samples are taken in this many batches, interleaved across sides
MAX_SECONDS_PER_FIGURE = 5.0  # a figure stops sampling after this long, whatever --repeat says
STATIC_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIDBENCHEXAMPLE0000",
    "AWS_SECRET_ACCESS_KEY": "bench/secret/not/a/real/key/000000000000",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent/tiergate-bench/config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/tiergate-bench/credentials",
}

# (key, label, unit) of every table row, in print order; every side measures the same keys.
ROWS = (
    ("request_small", "request: small chat, to_converse", "µs/req"),
    ("request_agent", "request: agent (11 turns, 3 tools), to_converse", "µs/req"),
    ("prepare_small", "request: small, to_converse+dumps+SigV4", "µs/req"),
    ("prepare_agent", "request: agent, to_converse+dumps+SigV4", "µs/req"),
    ("sign", "request: SigV4 signing alone (agent body)", "µs/req"),
    ("response_text", "response: text, loads+from_converse+dumps", "µs/resp"),
    ("response_tool", "response: tool call, loads+from_converse+dumps", "µs/resp"),
    ("stream_sse", "stream: Converse frames -> OpenAI SSE bytes", "µs/event"),
    ("stream_decode", "stream: frames + JSON parse only", "µs/event"),
)
# Figures without a tiergate counterpart, printed under the table.
EXTRAS = (
    (
        "stream_objects",
        "stream decoder alone (to ModelResponseStream objects, not serialized)",
        "µs/event",
    ),
)
# (side, column title, ratio title) of the anchor columns.
ANCHOR_COLUMNS = (("botocore", "botocore", "tg/boto"), ("litellm", "LiteLLM", "tg/LiteLLM"))


@dataclass(frozen=True)
class Figure:
    """One measurement: µs per unit (request, response or event), over ``samples`` samples."""

    median_us: float
    p90_us: float
    samples: int


@dataclass(frozen=True)
class Plan:
    """How many samples each figure takes."""

    repeat: int
    stream_repeat: int
    max_seconds: float

    def count(self, key: str) -> int:
        """Samples of ``key`` per round."""
        total = self.stream_repeat if key.startswith("stream") else self.repeat
        return max(total // ROUNDS, 1)


# --- timing ------------------------------------------------------------------------------------


def figure(samples_ns: list[int], per: int = 1) -> Figure:
    """Median and p90 (nearest rank) of ``samples_ns``, in µs per unit (``per`` units each)."""
    ordered = sorted(samples_ns)
    p90 = ordered[max(math.ceil(0.9 * len(ordered)) - 1, 0)]
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return Figure(median / per / 1000, p90 / per / 1000, len(ordered))


def time_calls(call: Callable[[], object], count: int, max_seconds: float) -> list[int]:
    """Nanoseconds of each of ``count`` calls, after a tenth as many unrecorded ones."""
    for _ in range(max(count // 10, 2)):
        call()
    samples: list[int] = []
    deadline = time.perf_counter_ns() + int(max_seconds * 1e9)
    clock = time.perf_counter_ns
    for _ in range(count):
        start = clock()
        call()
        end = clock()
        samples.append(end - start)
        if end > deadline:
            break
    return samples


async def time_awaits(
    call: Callable[[], Awaitable[object]], count: int, max_seconds: float
) -> list[int]:
    """:func:`time_calls` for a coroutine function, inside the running loop."""
    for _ in range(max(count // 10, 2)):
        await call()
    samples: list[int] = []
    deadline = time.perf_counter_ns() + int(max_seconds * 1e9)
    clock = time.perf_counter_ns
    for _ in range(count):
        start = clock()
        await call()
        end = clock()
        samples.append(end - start)
        if end > deadline:
            break
    return samples


class Side(Protocol):
    """One implementation being measured: tiergate or an anchor."""

    name: str
    keys: frozenset[str]

    def samples(self, key: str, count: int, max_seconds: float) -> list[int]:
        """``count`` timed runs of measurement ``key`` (fewer past ``max_seconds``), in ns."""
        ...

    def close(self) -> None:
        """Release what the side holds."""
        ...


# --- tiergate ----------------------------------------------------------------------------------


class _Body:
    """The part of ``aiohttp.StreamReader`` the provider reads: ``iter_any``."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def iter_any(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


class _Response:
    """A stand-in for the ``aiohttp.ClientResponse`` of a ConverseStream call."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.content = _Body(chunks)

    def close(self) -> None:
        """Nothing to drop."""

    def release(self) -> None:
        """Nothing to release."""


async def prepare(body: Json, signer: Signer) -> dict[str, str]:
    """What ``BedrockProvider._post`` does before the network."""
    payload = orjson.dumps(to_converse(body))
    headers = await signer.sign(URL, payload, {"Content-Type": "application/json"})
    headers["User-Agent"] = f"tiergate/{tiergate.__version__}"
    return headers


def respond(raw: bytes) -> bytes:
    """What ``BedrockProvider.send`` does with a 200 answer."""
    completion = from_converse(
        orjson.loads(raw), model=MODEL_ID, completion_id="chatcmpl-bench", created=1795000000
    )
    return orjson.dumps(completion)


async def translate_stream(chunks: list[bytes]) -> int:
    """The provider's ``_EventStream`` over ``chunks``; the number of SSE events it produced."""
    writer = ChunkWriter(model=MODEL_ID, completion_id="chatcmpl-bench", created=1795000000)
    stream = await _EventStream("bench", cast("Any", _Response(chunks)), writer).open()
    if not isinstance(stream, _EventStream):
        raise RuntimeError(f"the bench stream was refused: {stream.body!r}")
    return sum([1 async for _ in stream])


def decode_stream(chunks: list[bytes]) -> int:
    """Frame decoding and JSON parsing alone, as the provider does them; the events seen."""
    frames = EventStreamBuffer()
    events = 0
    for data in chunks:
        frames.add_data(data)
        for message in frames:
            orjson.loads(message.payload)
            events += 1
    return events


class TiergateSide:
    """The Bedrock provider's own code paths."""

    name = "tiergate"

    def __init__(self, fixtures: Fixtures) -> None:
        # Static keys from the environment, resolved by botocore's chain on the first signing.
        signer = Signer("bench", Session(), service="bedrock", region=REGION)
        signed = orjson.dumps(to_converse(fixtures.agent))
        text, tool = orjson.dumps(fixtures.text_answer), orjson.dumps(fixtures.tool_answer)
        self._calls: dict[str, Callable[[], object]] = {
            "request_small": lambda: to_converse(fixtures.small),
            "request_agent": lambda: to_converse(fixtures.agent),
            "response_text": lambda: respond(text),
            "response_tool": lambda: respond(tool),
            "stream_decode": lambda: decode_stream(fixtures.chunks),
        }
        self._awaits: dict[str, Callable[[], Awaitable[object]]] = {
            "prepare_small": lambda: prepare(fixtures.small, signer),
            "prepare_agent": lambda: prepare(fixtures.agent, signer),
            "sign": lambda: signer.sign(URL, signed, {"Content-Type": "application/json"}),
            "stream_sse": lambda: translate_stream(fixtures.chunks),
        }
        self.keys = frozenset(self._calls) | frozenset(self._awaits)
        self._loop = asyncio.new_event_loop()

    def samples(self, key: str, count: int, max_seconds: float) -> list[int]:
        if key in self._calls:
            return time_calls(self._calls[key], count, max_seconds)
        return self._loop.run_until_complete(time_awaits(self._awaits[key], count, max_seconds))

    def close(self) -> None:
        self._loop.close()


# --- anchors -----------------------------------------------------------------------------------


class _RawStream:
    """The part of botocore's ``StreamingBody`` that ``EventStream`` reads."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    def stream(self) -> Iterator[bytes]:
        return iter(self._chunks)

    def close(self) -> None:
        """Nothing to close."""


class BotocoreSide:
    """botocore's own parsing and signing: what a boto3-based gateway pays at least."""

    name = "botocore"

    def __init__(self, fixtures: Fixtures) -> None:
        operation = Session().get_service_model("bedrock-runtime").operation_model("ConverseStream")
        if operation.output_shape is None:
            raise RuntimeError("botocore's model of ConverseStream has no output shape")
        self._shape = cast("StructureShape", operation.output_shape.members["stream"])
        self._parser = EventStreamJSONParser()  # RestJSONParser's event-stream parser
        self._chunks = fixtures.chunks
        self._credentials = Credentials(
            STATIC_AWS_ENV["AWS_ACCESS_KEY_ID"], STATIC_AWS_ENV["AWS_SECRET_ACCESS_KEY"]
        ).get_frozen_credentials()
        self._body = orjson.dumps(to_converse(fixtures.agent))
        # botocore stops at dicts: the same parse anchors both stream rows.
        self._calls = {"sign": self._sign, "stream_sse": self._parse, "stream_decode": self._parse}
        self.keys = frozenset(self._calls)
        if self._parse() != fixtures.events:
            raise RuntimeError("botocore did not parse every event of the bench stream")

    def _parse(self) -> int:
        raw = cast("Any", _RawStream(self._chunks))  # botocore's StreamingBody, in its stubs
        return sum(1 for _ in EventStream(raw, self._shape, self._parser, "ConverseStream"))

    def _sign(self) -> object:
        headers = {"Content-Type": "application/json"}
        request = AWSRequest(method="POST", url=URL, data=self._body, headers=headers)
        SigV4Auth(self._credentials, "bedrock", REGION).add_auth(request)
        return request.headers

    def samples(self, key: str, count: int, max_seconds: float) -> list[int]:
        return time_calls(self._calls[key], count, max_seconds)

    def close(self) -> None:
        """Nothing held."""


class LiteLLMSide:
    """LiteLLM, timed by ``bench/litellm_bedrock.py`` in its own venv, one batch per request.

    The script reads the fixtures from a file and reports its version, notes and Converse body
    for the agent request on a first line; then it answers each ``{"key", "count",
    "max_seconds"}`` line on stdin with its samples.
    """

    name = "litellm"

    def __init__(self, fixtures: Fixtures, work: Path) -> None:
        path = work / "fixtures.json"
        path.write_bytes(orjson.dumps(_litellm_input(fixtures)))
        self._log_path = work / "litellm.log"
        self._log = self._log_path.open("wb")
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
        self._process = subprocess.Popen(
            [str(LITELLM_PYTHON), str(LITELLM_SCRIPT), str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
        )
        try:
            self.info = self._read()
        except BaseException:
            self.close()
            raise
        self.keys = frozenset(self.info.pop("keys"))
        same = self.info.pop("agent_converse", None) == to_converse(fixtures.agent)
        self.info["same_converse_body"] = same

    def samples(self, key: str, count: int, max_seconds: float) -> list[int]:
        ask = {"key": key, "count": count, "max_seconds": max_seconds}
        stdin = cast("IO[bytes]", self._process.stdin)
        stdin.write(orjson.dumps(ask) + b"\n")
        stdin.flush()
        samples: list[int] = self._read()["samples_ns"]
        return samples

    def _read(self) -> Json:
        line = cast("IO[bytes]", self._process.stdout).readline()
        if not line:
            self._log.flush()
            tail = self._log_path.read_text(errors="replace")[-1500:]
            raise RuntimeError(f"litellm_bedrock.py ended early:\n{tail}")
        reply: Json = orjson.loads(line)
        return reply

    def close(self) -> None:
        cast("IO[bytes]", self._process.stdin).close()  # the script ends at end of input
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._log.close()


def _litellm_input(fixtures: Fixtures) -> Json:
    return {
        "model": MODEL_ID,
        "region": REGION,
        "url": URL,
        "small": fixtures.small,
        "agent": fixtures.agent,
        "text_answer": fixtures.text_answer,
        "tool_answer": fixtures.tool_answer,
        "stream": base64.b64encode(fixtures.stream).decode(),
        "chunk_sizes": [len(chunk) for chunk in fixtures.chunks],
    }


def start_litellm(fixtures: Fixtures, work: Path) -> tuple[LiteLLMSide | None, Json]:
    """LiteLLM's side, or why there is none."""
    if not LITELLM_PYTHON.exists():
        return None, {
            "skipped": f"{LITELLM_PYTHON.relative_to(ROOT)} missing; create it with "
            "bash bench/setup_litellm.sh"
        }
    try:
        side = LiteLLMSide(fixtures, work)
    except (RuntimeError, OSError, orjson.JSONDecodeError) as exc:
        return None, {"skipped": str(exc)}
    return side, side.info


# --- measuring ---------------------------------------------------------------------------------


def measure(sides: list[Side], plan: Plan, events: int) -> dict[str, dict[str, Figure]]:
    """Every side's figures, sampled in interleaved rounds; side name -> key -> figure."""
    keys = [key for key, _, _ in ROWS + EXTRAS]
    samples: dict[str, dict[str, list[int]]] = {side.name: {} for side in sides}
    for number in range(ROUNDS):
        print(f"round {number + 1}/{ROUNDS} ...", file=sys.stderr, flush=True)
        for key in keys:
            for side in sides:
                if key in side.keys:
                    batch = side.samples(key, plan.count(key), plan.max_seconds / ROUNDS)
                    samples[side.name].setdefault(key, []).extend(batch)
    return {
        name: {
            key: figure(ns, events if key.startswith("stream") else 1) for key, ns in by_key.items()
        }
        for name, by_key in samples.items()
    }


# --- report ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Results:
    """Everything one run measured, and what LiteLLM's side said about itself."""

    fixtures: Fixtures
    plan: Plan
    figures: dict[str, dict[str, Figure]]  # side -> key -> figure
    litellm: Json


def machine() -> Json:
    """The CPU, its core count, the interpreter and the libraries measured."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass  # not Linux: platform.processor() is what there is
    return {
        "cpu": model,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tiergate": tiergate.__version__,
        "botocore": botocore.__version__,
        "orjson": orjson.__version__,
    }


def _us(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def table(results: Results) -> list[str]:
    """The figures side by side, one row per measurement."""
    rows = [["measurement", "unit", "tiergate", "p90"]]
    rows[0] += [cell for _, title, ratio in ANCHOR_COLUMNS for cell in (title, ratio)]
    for key, label, unit in ROWS:
        mine = results.figures["tiergate"][key]
        row = [label, unit, _us(mine.median_us), _us(mine.p90_us)]
        for name, _, _ in ANCHOR_COLUMNS:
            anchor = results.figures.get(name, {}).get(key)
            ratio = f"{mine.median_us / anchor.median_us:.2f}" if anchor else "-"
            row += [_us(anchor.median_us) if anchor else "-", ratio]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [cell.rjust(width) for cell, width in zip(row[2:], widths[2:], strict=True)]
        lines.append("  ".join(cells))
    lines.insert(1, "-" * len(lines[0]))
    return lines


def report(results: Results) -> list[str]:
    """The printed report."""
    info, fixtures, plan = machine(), results.fixtures, results.plan
    lines = [
        "Bedrock provider: translation cost (µs; median of all samples, p90 for tiergate)",
        f"machine: {info['cpu']}, os.cpu_count()={info['cpu_count']}, {info['platform']}",
        f"python {info['python']}, tiergate {info['tiergate']}, botocore {info['botocore']}, "
        f"orjson {info['orjson']}, litellm {results.litellm.get('litellm', '-')}",
        f"samples: {plan.repeat} per request/response figure, {plan.stream_repeat} streams per "
        f"stream figure, in {ROUNDS} interleaved rounds (at most {plan.max_seconds:g} s per "
        f"figure); stream: {fixtures.events} events, {len(fixtures.stream)} bytes, "
        f"{len(fixtures.chunks)} chunks of 1-4 KiB",
        "",
        *table(results),
        "",
        _events_per_second(results),
    ]
    for name, title, _ in ANCHOR_COLUMNS:
        for key, label, unit in EXTRAS:
            extra = results.figures.get(name, {}).get(key)
            if extra:
                lines.append(f"{title} {label}: {_us(extra.median_us)} {unit}")
    lines += [
        "",
        "ratio = tiergate median / anchor median (below 1: tiergate is cheaper).",
        "botocore: EventStream + rest-json event parser + ConverseStream shape, ending at dicts "
        "(no OpenAI output); signing: bare SigV4Auth.add_auth.",
    ]
    if "same_converse_body" in results.litellm:
        verdict = "the same as" if results.litellm["same_converse_body"] else "DIFFERENT from"
        lines.append(f"litellm: its Converse body for the agent request is {verdict} tiergate's")
    lines += [f"litellm: {note}" for note in results.litellm.get("notes", [])]
    if "skipped" in results.litellm:
        lines.append(f"litellm: column skipped: {results.litellm['skipped']}")
    return lines


def _events_per_second(results: Results) -> str:
    parts = []
    for name, title in (("tiergate", "tiergate"), *((n, t) for n, t, _ in ANCHOR_COLUMNS)):
        stream = results.figures.get(name, {}).get("stream_sse")
        if stream:
            parts.append(f"{title} {1e6 / stream.median_us:,.0f}")
    return "stream events/s on one core (to SSE bytes; botocore to dicts): " + ", ".join(parts)


def write_json(path: Path, results: Results) -> None:
    """Every figure, with the machine and the plan, as JSON."""
    document = {
        "machine": machine(),
        "plan": {**asdict(results.plan), "rounds": ROUNDS},
        "stream": {"events": results.fixtures.events, "bytes": len(results.fixtures.stream)},
        "rows": [{"key": key, "label": label, "unit": unit} for key, label, unit in ROWS + EXTRAS],
        "figures": {
            name: {key: asdict(value) for key, value in figures.items()}
            for name, figures in results.figures.items()
        },
        "litellm": results.litellm,
    }
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))


# --- command line ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description="Translation cost of the Bedrock provider, beside botocore and LiteLLM."
    )
    parser.add_argument(
        "--repeat", type=int, help=f"samples per request/response figure (default {DEFAULT_REPEAT})"
    )
    parser.add_argument("--quick", action="store_true", help="a fifth of the samples")
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM column")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 10 * ROUNDS:
        parser.error(f"--repeat must be at least {10 * ROUNDS}")
    return args


def plan_for(args: argparse.Namespace) -> Plan:
    """Sample counts from the command line."""
    repeat = args.repeat or DEFAULT_REPEAT // (QUICK_DIVISOR if args.quick else 1)
    return Plan(repeat, stream_repeat=max(repeat // 10, ROUNDS), max_seconds=MAX_SECONDS_PER_FIGURE)


def isolate_aws_env() -> None:
    """Static credentials from the environment; no profile, no config files, no metadata."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        os.environ.pop(name, None)
    os.environ.update(STATIC_AWS_ENV)


def main(argv: list[str] | None = None) -> int:
    """Measure, print, and write JSON if asked."""
    args = parse_args(argv)
    plan = plan_for(args)
    isolate_aws_env()
    fixtures = build_fixtures()
    litellm_info: Json = {"skipped": "--no-litellm"}
    with tempfile.TemporaryDirectory(prefix="tiergate-bench-") as work:
        sides: list[Side] = [TiergateSide(fixtures), BotocoreSide(fixtures)]
        if not args.no_litellm:
            print("starting LiteLLM (bench/.venv-litellm) ...", file=sys.stderr, flush=True)
            litellm, litellm_info = start_litellm(fixtures, Path(work))
            sides += [litellm] if litellm else []
        try:
            figures = measure(sides, plan, fixtures.events)
        finally:
            for side in sides:
                side.close()
    results = Results(fixtures, plan, figures, litellm_info)
    print("\n".join(report(results)))
    if args.json:
        write_json(args.json, results)
        print(f"JSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
