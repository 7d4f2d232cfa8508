"""ConverseStream events → OpenAI ``chat.completion.chunk`` SSE events.

One :class:`ChunkWriter` per stream keeps what OpenAI chunks need and Converse events do not
carry: the tool-call index of each content block (Converse numbers content blocks, OpenAI numbers
tool calls), whether the message has stopped, and its usage. Tool-call arguments go out as the
fragments that arrived; clients concatenate them per index, as OpenAI's own streams require.
"""

from __future__ import annotations

from typing import Any

import orjson

from tiergate.providers.converse import finish_reason, openai_usage

Json = dict[str, Any]

DONE = b"data: [DONE]\n\n"
_END = b"}\n\n"


class StreamProtocolError(ValueError):
    """The Converse events break the stream's grammar (a delta for a block never started)."""


class ChunkWriter:
    """Translates the events of one ConverseStream response, in order."""

    def __init__(self, *, model: str, completion_id: str, created: int) -> None:
        head = {"id": completion_id, "object": "chat.completion.chunk", "created": created}
        # Every chunk starts the same way: serialise that part once.
        self._prefix = b"data: " + orjson.dumps({**head, "model": model})[:-1] + b',"choices":['
        self._tool_index: dict[int, int] = {}
        self.started = False  # messageStart seen
        self.content_started = False  # anything after the role chunk was produced
        self.stopped = False  # messageStop seen
        self.usage: Json | None = None

    def event(self, event_type: str, payload: Json) -> bytes:
        """The SSE event(s) for one Converse event; empty when it has no OpenAI counterpart."""
        if event_type == "contentBlockDelta":
            return self._delta(payload)
        if event_type == "messageStart":
            self.started = True
            return self._chunk({"role": "assistant", "content": ""})
        if event_type == "contentBlockStart":
            return self._block_start(payload)
        if event_type == "messageStop":
            self.stopped = self.content_started = True
            reason = finish_reason(payload.get("stopReason"))
            return self._chunk({}, reason)
        if event_type == "metadata":
            usage = payload.get("usage")
            if not isinstance(usage, dict):
                return b""
            self.usage = openai_usage(usage)
            return self._prefix + b'],"usage":' + orjson.dumps(self.usage) + _END
        return b""  # contentBlockStop and events added to Converse later

    def _delta(self, payload: Json) -> bytes:
        delta = payload.get("delta")
        if not isinstance(delta, dict):
            return b""
        text = delta.get("text")
        if isinstance(text, str):
            self.content_started = True
            return self._chunk({"content": text})
        tool = delta.get("toolUse")
        if isinstance(tool, dict):
            block = payload.get("contentBlockIndex")
            index = self._tool_index.get(block) if isinstance(block, int) else None
            if index is None:
                raise StreamProtocolError(f"tool input for content block {block} never started")
            self.content_started = True
            fragment = tool.get("input", "")
            call = {"index": index, "function": {"arguments": fragment}}
            return self._chunk({"tool_calls": [call]})
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, dict) and isinstance(reasoning.get("text"), str):
            self.content_started = True
            return self._chunk({"reasoning_content": reasoning["text"]})
        return b""  # signatures, redacted reasoning, citations: no OpenAI counterpart

    def _block_start(self, payload: Json) -> bytes:
        start = payload.get("start")
        tool = start.get("toolUse") if isinstance(start, dict) else None
        block = payload.get("contentBlockIndex")
        if not isinstance(tool, dict) or not isinstance(block, int):
            return b""
        index = self._tool_index[block] = len(self._tool_index)
        self.content_started = True
        call = {
            "index": index,
            "id": tool.get("toolUseId"),
            "type": "function",
            "function": {"name": tool.get("name"), "arguments": ""},
        }
        return self._chunk({"tool_calls": [call]})

    def _chunk(self, delta: Json, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self._prefix + orjson.dumps(choice) + b"]" + _END
