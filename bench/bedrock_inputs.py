"""The inputs of ``bench/bedrock.py``: request bodies, Converse answers, ConverseStream bytes.

Every side of the benchmark measures the same inputs, built once by :func:`build_fixtures` and
deterministic (seeded ``random.Random``): a one-turn chat and a coding agent's request (OpenAI
bodies), a text answer and a tool-call answer (Converse bodies), and a ConverseStream answer of
366 events, encoded as AWS event-stream frames and cut into 1-4 KiB chunks as a socket delivers
them. The frames are encoded by the tests' encoder, ``tests/providers/bedrock/eventstream.py``,
imported from the checkout.
"""

from __future__ import annotations

import importlib
import itertools
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import orjson

Json = dict[str, Any]

ROOT = Path(__file__).resolve().parent.parent
SEED = 20261127

PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
VOCABULARY = (
    "the gateway routes each request to the cheapest tier that can serve it and falls back "
    "when a tier is saturated so that latency stays within budget while cost goes down over "
    "time because most prompts are short and most answers fit in a few hundred tokens"
)
TEXT_DELTAS = 300
TOOL_FRAGMENTS = 60


@dataclass(frozen=True)
class Fixtures:
    """The inputs every side measures: request bodies, Converse answers, stream bytes."""

    small: Json
    agent: Json
    text_answer: Json
    tool_answer: Json
    stream: bytes
    chunks: list[bytes]
    events: int


def small_request() -> Json:
    """A one-turn chat."""
    return {
        "model": "chat",
        "messages": [{"role": "user", "content": "Say hello in French, in one short sentence."}],
        "max_tokens": 64,
    }


def agent_request() -> Json:
    """A coding agent's request: system prompt, 11 turns with 2 tool calls, 3 tools."""
    return {
        "model": "agent",
        "messages": [
            {"role": "system", "content": _sentences(24)},
            {"role": "user", "content": _sentences(3)},
            _tool_call_turn(
                "I will search the docs first.",
                "call_7Kq2mBv9TzXa1pLs3dNf8wQe",
                "search_docs",
                {"query": "cascade fallback on 429", "limit": 5, "filters": {"section": "guide"}},
            ),
            _tool_result("call_7Kq2mBv9TzXa1pLs3dNf8wQe", _sentences(10)),
            _tool_call_turn(
                None,
                "call_Hs82LmQp0vXe4RtY6uJk1ZcB",
                "read_file",
                {"path": "src/tiergate/cascade.py", "start_line": 1, "end_line": 120},
            ),
            _tool_result("call_Hs82LmQp0vXe4RtY6uJk1ZcB", _sentences(18)),
            {"role": "assistant", "content": _sentences(6)},
            {"role": "user", "content": _sentences(2)},
            {"role": "assistant", "content": _sentences(4)},
            {"role": "user", "content": _sentences(1)},
            {"role": "assistant", "content": _sentences(3)},
            {"role": "user", "content": "Now write the test for the fallback, please."},
        ],
        "tools": _tools(),
        "max_tokens": 1024,
        "temperature": 0.2,
        "stop": ["</answer>"],
    }


def text_answer() -> Json:
    """A Converse answer with one text block."""
    return _answer([{"text": "".join(_text_pieces(random.Random(SEED), TEXT_DELTAS))}], "end_turn")


def tool_answer() -> Json:
    """A Converse answer with a text block and a tool call."""
    tool = {"toolUseId": "tooluse_Qx81nB2kLmZp9RtVc4HsYa", "name": "run_tests", "input": _args()}
    return _answer([{"text": "Let me run the tests."}, {"toolUse": tool}], "tool_use")


def stream_frames(event_frame: Callable[[str, Json], bytes]) -> list[bytes]:
    """A ConverseStream answer, one frame per event: text, then a tool call."""
    rng = random.Random(SEED)
    arguments = orjson.dumps(_args()).decode()
    events: list[tuple[str, Json]] = [("messageStart", {"role": "assistant"})]
    events += [_delta(0, {"text": piece}) for piece in _text_pieces(rng, TEXT_DELTAS)]
    events.append(("contentBlockStop", {"contentBlockIndex": 0}))
    start = {"toolUse": {"toolUseId": "tooluse_Qx81nB2kLmZp9RtVc4HsYa", "name": "run_tests"}}
    events.append(("contentBlockStart", {"contentBlockIndex": 1, "start": start}))
    events += [_delta(1, {"toolUse": {"input": p}}) for p in _split(arguments, TOOL_FRAGMENTS)]
    events.append(("contentBlockStop", {"contentBlockIndex": 1}))
    events.append(("messageStop", {"stopReason": "tool_use"}))
    usage = {"inputTokens": 2210, "outputTokens": 412, "totalTokens": 2622}
    events.append(("metadata", {"usage": usage, "metrics": {"latencyMs": 5120}}))
    return [
        event_frame(name, {**payload, "p": PADDING[: 1 + 7 * number % len(PADDING)]})
        for number, (name, payload) in enumerate(events)
    ]


def network_chunks(stream: bytes) -> list[bytes]:
    """``stream`` cut the way a socket delivers it: 1 to 4 KiB at a time."""
    rng = random.Random(SEED)
    chunks, start = [], 0
    while start < len(stream):
        size = rng.randint(1024, 4096)
        chunks.append(stream[start : start + size])
        start += size
    return chunks


def build_fixtures() -> Fixtures:
    """Every input, built once."""
    frames = stream_frames(_event_frame_encoder())
    stream = b"".join(frames)
    return Fixtures(
        small=small_request(),
        agent=agent_request(),
        text_answer=text_answer(),
        tool_answer=tool_answer(),
        stream=stream,
        chunks=network_chunks(stream),
        events=len(frames),
    )


def _event_frame_encoder() -> Callable[[str, Json], bytes]:
    # The tests' encoder is not installed with the package: import it from the checkout.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    module = importlib.import_module("tests.providers.bedrock.eventstream")
    return cast("Callable[[str, Json], bytes]", module.event_frame)


def _sentences(count: int) -> str:
    rng = random.Random(SEED + count)
    return " ".join(
        " ".join(rng.choices(VOCABULARY.split(), k=14)).capitalize() + "." for _ in range(count)
    )


def _tool_call_turn(text: str | None, call_id: str, name: str, arguments: Json) -> Json:
    function = {"name": name, "arguments": orjson.dumps(arguments).decode()}
    call = {"id": call_id, "type": "function", "function": function}
    return {"role": "assistant", "content": text, "tool_calls": [call]}


def _tool_result(call_id: str, content: str) -> Json:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def _tools() -> list[Json]:
    string, integer = {"type": "string"}, {"type": "integer", "minimum": 1}
    search = {
        "query": {**string, "description": "What to look for."},
        "limit": {**integer, "maximum": 20},
        "filters": {
            "type": "object",
            "properties": {"section": {"enum": ["guide", "reference", "changelog"]}},
        },
    }
    read = {"path": string, "start_line": integer, "end_line": integer}
    run = {"paths": {"type": "array", "items": string}, "keyword": string, "timeout_s": integer}
    return [
        _tool("search_docs", "Search the project documentation.", search, ["query"]),
        _tool("read_file", "Read lines of a file in the repository.", read, ["path"]),
        _tool("run_tests", "Run the test suite, or part of it.", run, []),
    ]


def _tool(name: str, description: str, properties: Json, required: list[str]) -> Json:
    schema = {"type": "object", "properties": properties, "required": required}
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": schema},
    }


def _args() -> Json:
    return {
        "paths": ["tests/test_cascade.py", "tests/test_breaker.py", "tests/providers/bedrock"],
        "keyword": "fallback and not slow",
        "timeout_s": 300,
        "env": {"TIERGATE_LOG": "debug", "PYTHONHASHSEED": "0"},
        "note": "Run the fallback tests first; they cover the 429 and 503 paths of the cascade.",
    }


def _answer(content: list[Json], stop_reason: str) -> Json:
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason,
        "usage": {"inputTokens": 2210, "outputTokens": 412, "totalTokens": 2622},
        "metrics": {"latencyMs": 5120},
    }


def _text_pieces(rng: random.Random, count: int) -> list[str]:
    text = " ".join(rng.choices(VOCABULARY.split(), k=count * 2))
    pieces, start = [], 0
    for _ in range(count):
        size = rng.randint(4, 12)
        pieces.append(text[start : start + size])
        start += size
    return pieces


def _split(text: str, count: int) -> list[str]:
    bounds = [len(text) * i // count for i in range(count + 1)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def _delta(index: int, delta: Json) -> tuple[str, Json]:
    return "contentBlockDelta", {"contentBlockIndex": index, "delta": delta}
