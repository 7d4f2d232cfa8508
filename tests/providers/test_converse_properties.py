"""Property-based tests of the OpenAI ↔ Converse translation (hypothesis).

- Requests: whatever the conversation, translating keeps the order of contents, the roles
  (tool results as user turns), and the tool-call ids; turns alternate as Converse requires;
  translating the translation back and forth again changes nothing.
- Responses: an assistant message from Converse, made OpenAI and sent back in the next request,
  is the same Converse message.
- Streams: the OpenAI chunks of a ConverseStream, however Bedrock fragments the text and the
  tool arguments, add up to the non-streamed translation of the same response.
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tiergate.providers.converse import from_converse, to_converse, tool_use_id
from tiergate.providers.converse_stream import ChunkWriter

Json = dict[str, Any]

texts = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12).filter(
    str.strip
)
names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_-]{0,15}", fullmatch=True)
# Mostly OpenAI-style ids, sometimes ids Converse would refuse (other providers' formats).
call_ids = st.one_of(
    st.from_regex(r"call_[a-zA-Z0-9]{4,12}", fullmatch=True),
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=90),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=6,
)
arguments = st.dictionaries(names, json_values, max_size=4)


@st.composite
def conversations(draw: st.DrawFn) -> list[Json]:
    """OpenAI chat messages: system prompts anywhere, tool calls answered by tool messages."""
    messages: list[Json] = []
    used_ids: set[str] = set()
    for _ in range(draw(st.integers(1, 7))):
        kind = draw(st.sampled_from(["system", "user", "user", "assistant", "tools"]))
        if kind == "system":
            messages.append({"role": "system", "content": draw(texts)})
        elif kind == "user":
            parts = draw(st.lists(texts, min_size=1, max_size=3))
            content: Any = (
                parts[0] if len(parts) == 1 else [{"type": "text", "text": t} for t in parts]
            )
            messages.append({"role": "user", "content": content})
        elif kind == "assistant":
            messages.append({"role": "assistant", "content": draw(texts)})
        else:
            ids = draw(st.lists(call_ids, min_size=1, max_size=3, unique=True))
            ids = [i for i in ids if i not in used_ids and tool_use_id(i) not in used_ids]
            if not ids:
                continue
            used_ids.update(ids)
            used_ids.update(tool_use_id(i) for i in ids)
            calls = [
                {
                    "id": i,
                    "type": "function",
                    "function": {
                        "name": draw(names),
                        "arguments": orjson.dumps(draw(arguments)).decode(),
                    },
                }
                for i in ids
            ]
            text = draw(st.none() | texts)
            messages.append({"role": "assistant", "content": text, "tool_calls": calls})
            for i in ids:
                messages.append({"role": "tool", "tool_call_id": i, "content": draw(texts)})
    if not any(m["role"] in ("user", "assistant", "tool") for m in messages):
        messages.append({"role": "user", "content": draw(texts)})
    return messages


def openai_items(messages: list[Json]) -> list[tuple[Any, ...]]:
    """The contents of OpenAI messages in order, with the role Converse gives each."""
    items: list[tuple[Any, ...]] = []
    for message in messages:
        role, content = message["role"], message.get("content")
        if role == "system":
            continue
        if role == "tool":
            items.append(("user", "result", tool_use_id(message["tool_call_id"]), content))
            continue
        if isinstance(content, str):
            items.append((role, "text", content))
        elif isinstance(content, list):
            items.extend((role, "text", part["text"]) for part in content)
        for call in message.get("tool_calls", []):
            function = call["function"]
            items.append(
                (
                    role,
                    "call",
                    tool_use_id(call["id"]),
                    function["name"],
                    orjson.loads(function["arguments"]),
                )
            )
    return items


def converse_items(messages: list[Json]) -> list[tuple[Any, ...]]:
    items: list[tuple[Any, ...]] = []
    for message in messages:
        for block in message["content"]:
            if "text" in block:
                items.append((message["role"], "text", block["text"]))
            elif "toolUse" in block:
                use = block["toolUse"]
                items.append((message["role"], "call", use["toolUseId"], use["name"], use["input"]))
            else:
                result = block["toolResult"]
                text = "".join(part["text"] for part in result["content"])
                items.append((message["role"], "result", result["toolUseId"], text))
    return items


def back_to_openai(converse: Json) -> list[Json]:
    """Converse messages as OpenAI messages: the inverse translation, for the round trip."""
    messages: list[Json] = [
        {"role": "system", "content": s["text"]} for s in converse.get("system", [])
    ]
    for message in converse["messages"]:
        texts_, calls = [], []
        for block in message["content"]:
            if "toolResult" in block:
                result = block["toolResult"]
                content = [{"type": "text", "text": p["text"]} for p in result["content"]]
                messages.append(
                    {"role": "tool", "tool_call_id": result["toolUseId"], "content": content}
                )
            elif "toolUse" in block:
                use = block["toolUse"]
                arguments = orjson.dumps(use["input"]).decode()
                calls.append(
                    {
                        "id": use["toolUseId"],
                        "type": "function",
                        "function": {"name": use["name"], "arguments": arguments},
                    }
                )
            else:
                texts_.append({"type": "text", "text": block["text"]})
        if texts_ or calls:
            entry: Json = {"role": message["role"], "content": texts_}
            if calls:
                entry["tool_calls"] = calls
            messages.append(entry)
    return messages


@settings(max_examples=100, deadline=None)
@given(conversations())
def test_translation_keeps_order_roles_and_tool_call_ids(messages: list[Json]) -> None:
    converse = to_converse({"model": "m", "messages": messages})
    turns = converse["messages"]
    assert converse_items(turns) == openai_items(messages)
    assert [s["text"] for s in converse.get("system", [])] == [
        m["content"] for m in messages if m["role"] == "system"
    ]
    roles = [turn["role"] for turn in turns]
    assert all(a != b for a, b in itertools.pairwise(roles))
    # Ids Converse accepts are kept as they are.
    for item in converse_items(turns):
        if item[1] != "text":
            assert len(item[2]) <= 64


@settings(max_examples=100, deadline=None)
@given(conversations())
def test_translation_round_trips(messages: list[Json]) -> None:
    converse = to_converse({"model": "m", "messages": messages})
    again = to_converse({"model": "m", "messages": back_to_openai(converse)})
    assert again == converse


tool_uses = st.builds(
    lambda i, name, args: {"toolUse": {"toolUseId": i, "name": name, "input": args}},
    st.from_regex(r"tooluse_[a-zA-Z0-9]{6,20}", fullmatch=True),
    names,
    arguments,
)


@st.composite
def assistant_contents(draw: st.DrawFn) -> list[Json]:
    text = draw(st.none() | texts)
    uses = draw(st.lists(tool_uses, max_size=3, unique_by=lambda b: b["toolUse"]["toolUseId"]))
    content = ([{"text": text}] if text else []) + uses
    return content or [{"text": "ok"}]


@settings(max_examples=100, deadline=None)
@given(assistant_contents())
def test_a_response_sent_back_as_history_is_the_same_converse_message(content: list[Json]) -> None:
    response = {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": "end_turn",
    }
    message = from_converse(response, model="m", completion_id="c", created=0)["choices"][0][
        "message"
    ]
    history = [{"role": "user", "content": "hi"}, message]
    tools = [
        {"type": "function", "function": {"name": b["toolUse"]["name"]}}
        for b in content
        if "toolUse" in b
    ]
    body: Json = {"model": "m", "messages": history}
    if tools:
        body["tools"] = tools
    assert to_converse(body)["messages"][1] == {"role": "assistant", "content": content}


def stream_events(response: Json, cuts: st.DataObject) -> list[tuple[str, Json]]:
    """ConverseStream events for ``response``, text and tool input cut where hypothesis says."""
    events: list[tuple[str, Json]] = [("messageStart", {"role": "assistant"})]
    for index, block in enumerate(response["output"]["message"]["content"]):
        if "toolUse" in block:
            use = block["toolUse"]
            start = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
            events.append(("contentBlockStart", {"contentBlockIndex": index, "start": start}))
            pieces = split(orjson.dumps(use["input"]).decode(), cuts)
            events.extend(
                (
                    "contentBlockDelta",
                    {"contentBlockIndex": index, "delta": {"toolUse": {"input": p}}},
                )
                for p in pieces
            )
        else:
            events.extend(
                ("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": p}})
                for p in split(block["text"], cuts)
            )
        events.append(("contentBlockStop", {"contentBlockIndex": index}))
    events.append(("messageStop", {"stopReason": response["stopReason"]}))
    events.append(("metadata", {"usage": response["usage"], "metrics": {"latencyMs": 1}}))
    return events


def split(text: str, cuts: st.DataObject) -> list[str]:
    points = sorted(cuts.draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=8)))
    bounds = [0, *[p for p in points if p < len(text)], len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def accumulate(chunks: list[bytes]) -> tuple[Json, str | None, Json | None]:
    """What a client builds from the chunks (as the openai library's stream helpers do)."""
    message: Json = {"role": None, "content": None}
    calls: dict[int, Json] = {}
    finish, usage = None, None
    for chunk in chunks:
        data = orjson.loads(chunk.removeprefix(b"data: "))
        usage = data.get("usage") or usage
        for choice in data["choices"]:
            delta = choice["delta"]
            finish = choice["finish_reason"] or finish
            message["role"] = delta.get("role", message["role"])
            if delta.get("content"):
                message["content"] = (message["content"] or "") + delta["content"]
            for call in delta.get("tool_calls", []):
                entry = calls.setdefault(
                    call["index"],
                    {"id": None, "type": "function", "function": {"name": None, "arguments": ""}},
                )
                entry["id"] = call.get("id") or entry["id"]
                function = call.get("function", {})
                entry["function"]["name"] = function.get("name") or entry["function"]["name"]
                entry["function"]["arguments"] += function.get("arguments", "")
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return message, finish, usage


@settings(max_examples=100, deadline=None)
@given(assistant_contents(), st.sampled_from(["end_turn", "tool_use", "max_tokens"]), st.data())
def test_streamed_chunks_add_up_to_the_non_streamed_answer(
    content: list[Json], stop: str, cuts: st.DataObject
) -> None:
    usage = {"inputTokens": 11, "outputTokens": 7, "totalTokens": 18, "cacheReadInputTokens": 3}
    response = {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop,
        "usage": usage,
    }
    expected = from_converse(response, model="m", completion_id="c", created=0)
    writer = ChunkWriter(model="m", completion_id="c", created=0)
    chunks = [
        c for name, payload in stream_events(response, cuts) if (c := writer.event(name, payload))
    ]
    message, finish, streamed_usage = accumulate(chunks)
    assert finish == expected["choices"][0]["finish_reason"]
    assert streamed_usage == expected["usage"]
    want = expected["choices"][0]["message"]
    assert message["role"] == want["role"]
    assert message["content"] == want["content"]
    got_calls = message.get("tool_calls", [])
    assert [(c["id"], c["function"]["name"]) for c in got_calls] == [
        (c["id"], c["function"]["name"]) for c in want.get("tool_calls", [])
    ]
    assert [orjson.loads(c["function"]["arguments"]) for c in got_calls] == [
        orjson.loads(c["function"]["arguments"]) for c in want.get("tool_calls", [])
    ]
