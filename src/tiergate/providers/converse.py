"""OpenAI Chat Completions ↔ Amazon Bedrock Converse: pure translation of bodies.

``to_converse`` turns an OpenAI request body into a Converse request body; ``from_converse``
turns a Converse response into an OpenAI ``chat.completion``. The streaming direction is in
:mod:`tiergate.providers.converse_stream`. Nothing here does I/O.

What Converse requires and OpenAI clients do not guarantee, handled here: all system messages
go to ``system`` in order; ``tool`` messages become ``toolResult`` blocks of a user message;
consecutive same-role messages are merged; blank text blocks are dropped; tool descriptions are
sent only when non-empty; tool-call ids outside Converse's alphabet are mapped to valid ones,
the same way wherever they appear; a conversation holding tool blocks always carries a
``toolConfig``. A request Converse cannot express raises :class:`TranslationError`.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from typing import Any

import orjson

from tiergate.errors import TranslationError

log = logging.getLogger(__name__)

Json = dict[str, Any]

# OpenAI fields that have a Converse counterpart; any other field is ignored (debug log).
HANDLED = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "tools",
        "tool_choice",
    }
)

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}

_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
_TOOL_USE_ID = re.compile(r"[a-zA-Z0-9_.:-]{1,64}")
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_EMPTY_SCHEMA: Json = {"type": "object", "properties": {}}


def to_converse(body: Json, *, max_tokens_cap: int | None = None) -> Json:
    """The Converse request body for an OpenAI chat request (``modelId`` goes in the URL)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise TranslationError("'messages' must be a non-empty array.", "messages")
    system, turns = _conversation(messages)
    if not turns:
        raise TranslationError(
            "The conversation has no user or assistant message with content.", "messages"
        )
    request: Json = {"messages": turns}
    if system:
        request["system"] = system
    inference = _inference_config(body, max_tokens_cap)
    if inference:
        request["inferenceConfig"] = inference
    tool_config = _tool_config(body, turns)
    if tool_config is not None:
        request["toolConfig"] = tool_config
    if log.isEnabledFor(logging.DEBUG):
        ignored = sorted(key for key in body if key not in HANDLED)
        if ignored:
            log.debug("Converse has no counterpart for %s: ignored", ", ".join(ignored))
    return request


def tool_use_id(openai_id: str) -> str:
    """A Converse ``toolUseId`` for an OpenAI tool-call id: itself when Converse accepts it,
    else a stable digest, so a call and its result keep matching."""
    if _TOOL_USE_ID.fullmatch(openai_id):
        return openai_id
    return "tg_" + hashlib.sha256(openai_id.encode()).hexdigest()[:40]


def _conversation(messages: list[Any]) -> tuple[list[Json], list[Json]]:
    system: list[Json] = []
    turns: list[Json] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise TranslationError(f"{where} must be an object.", where)
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend({"text": text} for text in _texts(message.get("content"), where))
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"), where)
        elif role == "assistant":
            blocks = _assistant_blocks(message, where)
        elif role == "tool":
            role, blocks = "user", [_tool_result(message, where)]
        else:
            raise TranslationError(
                f"{where}.role {role!r} is not supported: expected system, developer, user, "
                "assistant or tool.",
                f"{where}.role",
            )
        if not blocks:
            continue  # nothing but blank text: Converse rejects blank blocks
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _texts(content: object, where: str) -> list[str]:
    """The non-blank texts of a message's content (a string or an array of text parts)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [content] if content.strip() else []
    if not isinstance(content, list):
        raise TranslationError(f"{where}.content must be a string or an array.", f"{where}.content")
    texts = []
    for index, part in enumerate(content):
        text = _part_text(part, f"{where}.content[{index}]")
        if text.strip():
            texts.append(text)
    return texts


def _part_text(part: object, where: str) -> str:
    kind = part.get("type") if isinstance(part, dict) else None
    if isinstance(part, dict) and kind in ("text", "refusal"):
        text = part.get(kind)
        if isinstance(text, str):
            return text
        raise TranslationError(f"{where}.{kind} must be a string.", f"{where}.{kind}")
    if isinstance(kind, str):
        raise TranslationError(
            f"{where}: content parts of type {kind!r} cannot be sent to Bedrock here "
            "(text parts, and image_url parts in user messages).",
            where,
        )
    raise TranslationError(f"{where} must be a content part object with a 'type'.", where)


def _user_blocks(content: object, where: str) -> list[Json]:
    if not isinstance(content, list):
        return [{"text": text} for text in _texts(content, where)]
    blocks: list[Json] = []
    for index, part in enumerate(content):
        place = f"{where}.content[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "image_url":
            blocks.append(_image(part, place))
        else:
            text = _part_text(part, place)
            if text.strip():
                blocks.append({"text": text})
    return blocks


def _image(part: Json, where: str) -> Json:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise TranslationError(f"{where}.image_url.url must be a string.", f"{where}.image_url")
    header, comma, data = url.partition(",")
    if not (header.startswith("data:") and header.endswith(";base64") and comma):
        raise TranslationError(
            f"{where}: Bedrock needs the image's bytes; send it as a base64 data URL "
            "(data:image/png;base64,...), not a link.",
            f"{where}.image_url",
        )
    mime = header[5:-7].lower()
    image_format = _IMAGE_FORMATS.get(mime)
    if image_format is None:
        raise TranslationError(
            f"{where}: image type {mime!r} is not supported by Bedrock "
            "(expected PNG, JPEG, GIF or WebP).",
            f"{where}.image_url",
        )
    # The JSON wire carries blobs base64-encoded: the data URL's payload goes as it is.
    return {"image": {"format": image_format, "source": {"bytes": data}}}


def _assistant_blocks(message: Json, where: str) -> list[Json]:
    blocks: list[Json] = [{"text": text} for text in _texts(message.get("content"), where)]
    calls = message.get("tool_calls")
    if calls is None:
        return blocks
    if not isinstance(calls, list):
        raise TranslationError(f"{where}.tool_calls must be an array.", f"{where}.tool_calls")
    for index, call in enumerate(calls):
        blocks.append(_tool_use(call, f"{where}.tool_calls[{index}]"))
    return blocks


def _tool_use(call: object, where: str) -> Json:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(call, dict) or not isinstance(function, dict):
        raise TranslationError(f"{where} must be a function tool call.", where)
    call_id, name = call.get("id"), function.get("name")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError(f"{where}.id must be a non-empty string.", f"{where}.id")
    if not isinstance(name, str) or not name:
        raise TranslationError(
            f"{where}.function.name must be a non-empty string.", f"{where}.function.name"
        )
    arguments = function.get("arguments")
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        tool_input: object = {}
    elif isinstance(arguments, str):
        try:
            tool_input = orjson.loads(arguments)
        except orjson.JSONDecodeError as exc:
            raise TranslationError(
                f"{where}.function.arguments is not valid JSON: {exc}",
                f"{where}.function.arguments",
            ) from exc
    else:
        tool_input = arguments
    if not isinstance(tool_input, dict):
        raise TranslationError(
            f"{where}.function.arguments must encode a JSON object.", f"{where}.function.arguments"
        )
    return {"toolUse": {"toolUseId": tool_use_id(call_id), "name": name, "input": tool_input}}


def _tool_result(message: Json, where: str) -> Json:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError(
            f"{where}.tool_call_id must be a non-empty string.", f"{where}.tool_call_id"
        )
    # No ``status``: only some Bedrock models accept it, and OpenAI has no such flag.
    content = [{"text": text} for text in _texts(message.get("content"), where)]
    return {"toolResult": {"toolUseId": tool_use_id(call_id), "content": content}}


def _inference_config(body: Json, cap: int | None) -> Json:
    config: Json = {}
    requested = body.get("max_completion_tokens")
    field = "max_completion_tokens"
    if requested is None:
        requested, field = body.get("max_tokens"), "max_tokens"
    if requested is not None:
        if not isinstance(requested, int) or isinstance(requested, bool) or requested < 1:
            raise TranslationError(f"'{field}' must be an integer of at least 1.", field)
        config["maxTokens"] = min(requested, cap) if cap else requested
    elif cap:
        config["maxTokens"] = cap
    for name, key in (("temperature", "temperature"), ("top_p", "topP")):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise TranslationError(f"'{name}' must be a number.", name)
        if not 0 <= value <= 1:
            # OpenAI allows temperature up to 2; Converse takes 0..1. Clamp, never a 400.
            log.debug("%s %s is outside Converse's range 0..1: clamped", name, value)
        config[key] = min(max(float(value), 0.0), 1.0)
    stop = body.get("stop")
    if stop is not None:
        sequences = [stop] if isinstance(stop, str) else stop
        if not isinstance(sequences, list) or not all(isinstance(s, str) for s in sequences):
            raise TranslationError("'stop' must be a string or an array of strings.", "stop")
        if any(sequences):
            config["stopSequences"] = [s for s in sequences if s]
    return config


def _tool_config(body: Json, turns: list[Json]) -> Json | None:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    specs = _tool_specs(tools) if tools else []
    history = _history_tool_names(turns)
    if history and not specs:
        # Converse rejects tool blocks without a toolConfig; declare the tools the
        # conversation already used, with an open schema.
        log.debug("declaring tools %s for the conversation's tool blocks", sorted(history))
        specs = [{"toolSpec": {"name": n, "inputSchema": {"json": _EMPTY_SCHEMA}}} for n in history]
    if not specs:
        return None
    if choice == "none":
        if not history:
            return None
        return {"tools": specs}  # required by the tool blocks; Converse has no "none"
    config: Json = {"tools": specs}
    if choice is not None:
        config["toolChoice"] = _tool_choice(choice, specs)
    return config


def _tool_specs(tools: object) -> list[Json]:
    if not isinstance(tools, list):
        raise TranslationError("'tools' must be an array.", "tools")
    specs = []
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise TranslationError(f"{where}: only function tools can be sent to Bedrock.", where)
        if not isinstance(function, dict):
            raise TranslationError(f"{where}.function must be an object.", f"{where}.function")
        name = function.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
            raise TranslationError(
                f"{where}.function.name must be 1 to 64 letters, digits, '_' or '-'.",
                f"{where}.function.name",
            )
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise TranslationError(
                f"{where}.function.parameters must be a JSON schema object.",
                f"{where}.function.parameters",
            )
        spec: Json = {"name": name, "inputSchema": {"json": parameters or _EMPTY_SCHEMA}}
        description = function.get("description")
        if isinstance(description, str) and description.strip():
            spec["description"] = description  # Converse rejects an empty description
        specs.append({"toolSpec": spec})
    return specs


def _tool_choice(choice: object, specs: list[Json]) -> Json:
    if choice == "auto":
        return {"auto": {}}
    if choice == "required":
        return {"any": {}}
    function = choice.get("function") if isinstance(choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str):
        raise TranslationError(
            "'tool_choice' must be 'none', 'auto', 'required' or "
            '{"type": "function", "function": {"name": ...}}.',
            "tool_choice",
        )
    if name not in {spec["toolSpec"]["name"] for spec in specs}:
        raise TranslationError(
            f"'tool_choice' names '{name}', which is not in 'tools'.", "tool_choice"
        )
    return {"tool": {"name": name}}


def _history_tool_names(turns: Iterable[Json]) -> list[str]:
    names: dict[str, None] = {}
    found = False
    for turn in turns:
        for block in turn["content"]:
            if "toolUse" in block:
                names[block["toolUse"]["name"]] = None
            found = found or "toolResult" in block
    if found and not names:
        names["tool"] = None  # results whose calls are not in this request
    return list(names)


def from_converse(response: Json, *, model: str, completion_id: str, created: int) -> Json:
    """The OpenAI ``chat.completion`` for a Converse response."""
    output = response.get("output")
    message = output.get("message") if isinstance(output, dict) else None
    blocks = message.get("content", []) if isinstance(message, dict) else []
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[Json] = []
    for block in blocks:
        if "text" in block:
            texts.append(block["text"])
        elif "toolUse" in block:
            use = block["toolUse"]
            arguments = orjson.dumps(use.get("input", {})).decode()
            calls.append(
                {
                    "id": use["toolUseId"],
                    "type": "function",
                    "function": {"name": use["name"], "arguments": arguments},
                }
            )
        elif "reasoningContent" in block:
            text = block["reasoningContent"].get("reasoningText", {}).get("text")
            if isinstance(text, str):
                reasoning.append(text)
    reply: Json = {"role": "assistant", "content": "".join(texts) if texts else None}
    if reasoning:
        reply["reasoning_content"] = "".join(reasoning)
    if calls:
        reply["tool_calls"] = calls
    completion: Json = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": reply,
                "logprobs": None,
                "finish_reason": finish_reason(response.get("stopReason")),
            }
        ],
    }
    usage = response.get("usage")
    if isinstance(usage, dict):
        completion["usage"] = openai_usage(usage)
    return completion


def finish_reason(stop_reason: object) -> str:
    """OpenAI's ``finish_reason`` for a Converse ``stopReason``."""
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def openai_usage(usage: Json) -> Json:
    """OpenAI's usage object for Converse's ``TokenUsage``.

    Converse's ``inputTokens`` excludes prompt-cache reads and writes, which it reports apart;
    OpenAI's ``prompt_tokens`` counts every input token, with the cached part in
    ``prompt_tokens_details.cached_tokens``. Cache writes go in ``cache_creation_input_tokens``
    (and reads in ``cache_read_input_tokens``), the names Anthropic-style clients know.
    """
    read = _tokens(usage.get("cacheReadInputTokens"))
    write = _tokens(usage.get("cacheWriteInputTokens"))
    prompt = _tokens(usage.get("inputTokens")) + read + write
    completion = _tokens(usage.get("outputTokens"))
    result: Json = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if "cacheReadInputTokens" in usage or "cacheWriteInputTokens" in usage:
        result["prompt_tokens_details"] = {"cached_tokens": read}
        result["cache_read_input_tokens"] = read
        result["cache_creation_input_tokens"] = write
    return result


def _tokens(value: object) -> int:
    return value if isinstance(value, int) and value > 0 else 0
