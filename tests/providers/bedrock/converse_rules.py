"""Validation of a Converse / ConverseStream request body, the way Bedrock Runtime checks it.

Two layers:

1. the operation's input shape from botocore's model of the API: botocore's own
   :class:`botocore.validate.ParamValidator` (types, required and unknown members, minimum
   lengths, one member per union), then the shape constraints it leaves out and Bedrock
   enforces: enum values, maximum lengths and values, the tool name and toolUseId patterns,
   and blobs that must be base64 text in JSON;
2. the rules of a conversation that no shape expresses: roles, blank text, tool turns.

The second layer runs only on a body that passes the first, as a service validates its input
before reading it. :func:`problems` returns human-readable problems (worded like Bedrock's
ValidationException messages where those are known); an empty list means the body is valid.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import botocore.session
from botocore.model import ListShape, MapShape, Shape, StructureShape
from botocore.validate import ParamValidator

# URL operation (the last path segment) -> botocore operation name.
OPERATIONS = {"converse": "Converse", "converse-stream": "ConverseStream"}
# Shapes whose (simple) regex patterns are checked; Python's regex dialect reads them as Java's.
_PATTERN_SHAPES = frozenset({"ToolName", "ToolUseId"})
_NUMBER_TYPES = frozenset({"integer", "long", "float", "double"})
NO_TOOL_CONFIG = (
    "The toolConfig field must be defined when using toolUse and toolResult content blocks."
)
FIRST_MESSAGE_NOT_USER = (
    "A conversation must start with a user message. "
    "Try again with a conversation that starts with a user message."
)
ROLES_NOT_ALTERNATING = (
    "A conversation must alternate between user and assistant roles. "
    "Make sure the conversation alternates between user and assistant roles and try again."
)

Body = dict[str, Any]


def load_input_shapes() -> dict[str, StructureShape]:
    """The input shapes of Converse and ConverseStream, keyed by URL operation."""
    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    shapes = {path: model.operation_model(name).input_shape for path, name in OPERATIONS.items()}
    return {path: shape for path, shape in shapes.items() if shape is not None}


def problems(body: object, *, model_id: str, input_shape: Shape) -> list[str]:
    """What Bedrock would reject in ``body`` sent for ``model_id``; empty when it is valid."""
    if not isinstance(body, dict):
        return ["The request body must be a JSON object."]
    if "modelId" in body:
        return ['Unknown parameter in input: "modelId" (the model id belongs in the URL path)']
    found = shape_problems({**body, "modelId": model_id}, input_shape)
    return found or conversation_problems(body)


def shape_problems(params: Body, input_shape: Shape) -> list[str]:
    """Layer 1: ``params`` (the body plus ``modelId``) against the operation's input shape."""
    report = ParamValidator().validate(params, input_shape)
    found = report.generate_report().splitlines() if report.has_errors() else []
    return found + list(_constraint_problems(params, input_shape, ""))


def conversation_problems(body: Body) -> list[str]:
    """Layer 2: the conversation rules, on a body whose shape is valid."""
    messages: list[Body] = body.get("messages", [])
    return [
        *_role_problems(messages),
        *_content_problems(body, messages),
        *_tool_config_problems(body, messages),
        *_tool_use_problems(messages),
        *_tool_result_problems(messages),
    ]


# -- layer 1: constraints ParamValidator does not check ----------------------------------------


def _constraint_problems(value: object, shape: Shape, path: str) -> Iterator[str]:
    """Enum, max and pattern constraints, with Coral-style 1-based ``a.1.member.b`` paths."""
    kind = shape.type_name
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        if not shape.is_document_type:
            for key, member in value.items():
                if key in shape.members:
                    yield from _constraint_problems(member, shape.members[key], _join(path, key))
    elif isinstance(shape, ListShape) and isinstance(value, list):
        yield from _max_problems(len(value), shape, path, "length", shown=None)
        for index, item in enumerate(value, start=1):
            yield from _constraint_problems(item, shape.member, f"{path}.{index}.member")
    elif isinstance(shape, MapShape) and isinstance(value, dict):
        yield from _max_problems(len(value), shape, path, "length", shown=None)
        for key, item in value.items():
            yield from _constraint_problems(item, shape.value, f"{path}.{key}")
    elif kind == "string" and isinstance(value, str):
        yield from _string_problems(value, shape, path)
    elif kind == "blob" and isinstance(value, str) and not _is_base64(value):
        yield f"Value at '{path}' failed to satisfy constraint: Member must be base64-encoded"
    elif kind in _NUMBER_TYPES and isinstance(value, int | float) and not isinstance(value, bool):
        yield from _max_problems(value, shape, path, "value", shown=value)


def _string_problems(value: str, shape: Shape, path: str) -> Iterator[str]:
    failed = f"Value '{value}' at '{path}' failed to satisfy constraint: Member must"
    enum = shape.metadata.get("enum")
    if enum and value not in enum:
        yield f"{failed} satisfy enum value set: [{', '.join(enum)}]"
    pattern = shape.metadata.get("pattern")
    if shape.name in _PATTERN_SHAPES and pattern and not re.fullmatch(pattern, value):
        yield f"{failed} satisfy regular expression pattern: {pattern}"
    yield from _max_problems(len(value), shape, path, "length", shown=value)


def _max_problems(
    measure: float, shape: Shape, path: str, what: str, *, shown: object
) -> Iterator[str]:
    limit = shape.metadata.get("max")
    if limit is not None and measure > limit:
        value = "Value" if shown is None else f"Value '{shown}'"
        yield (
            f"{value} at '{path}' failed to satisfy constraint: "
            f"Member must have {what} less than or equal to {limit}"
        )


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except binascii.Error:
        return False
    return True


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# -- layer 2: conversation rules (0-based paths, as Bedrock's own messages use) -----------------


def _role_problems(messages: list[Body]) -> Iterator[str]:
    for index, message in enumerate(messages):
        if message["role"] == "system":
            yield (
                f"The role 'system' is not allowed at messages.{index}.role: "
                "put system prompts in the top-level system field and try again."
            )
    if not messages or messages[0]["role"] != "user":
        yield FIRST_MESSAGE_NOT_USER
    if any(first["role"] == second["role"] for first, second in pairwise(messages)):
        yield ROLES_NOT_ALTERNATING


def _content_problems(body: Body, messages: list[Body]) -> Iterator[str]:
    for index, message in enumerate(messages):
        if not message["content"]:
            yield (
                f"The content field in the Message object at messages.{index} is empty. "
                "Add a ContentBlock object to the content field and try again."
            )
    for index, position, block in _blocks(messages):
        if "text" in block and not block["text"].strip():
            yield (
                f"The text field in the ContentBlock object at messages.{index}.content.{position}"
                " is blank. Add text to the text field, and try again."
            )
    for index, block in enumerate(body.get("system", [])):
        if "text" in block and not block["text"].strip():
            yield (
                f"The text field in the SystemContentBlock object at system.{index} is blank. "
                "Add text to the text field, and try again."
            )


def _tool_config_problems(body: Body, messages: list[Body]) -> Iterator[str]:
    config: Body | None = body.get("toolConfig")
    if config is None:
        if any("toolUse" in block or "toolResult" in block for *_, block in _blocks(messages)):
            yield NO_TOOL_CONFIG
        return
    names = set()
    for index, tool in enumerate(config["tools"]):
        spec = tool.get("toolSpec") or tool.get("systemTool") or {}
        names.add(spec.get("name"))
        description = spec.get("description")
        if description is not None and not description.strip():
            yield (
                f"The description field of the tool at toolConfig.tools.{index} is blank. "
                "Add a description to the tool specification and try again."
            )
    chosen = config.get("toolChoice", {}).get("tool")
    if chosen is not None and chosen["name"] not in names:
        yield (
            f"The tool {chosen['name']} named in toolConfig.toolChoice is not defined in "
            "toolConfig.tools. Define the tool or choose another one and try again."
        )


def _tool_use_problems(messages: list[Body]) -> Iterator[str]:
    for index, position, block in _blocks(messages):
        if "toolUse" in block and not isinstance(block["toolUse"]["input"], dict):
            yield (
                f"The input field of the toolUse block at messages.{index}.content.{position} "
                "must be a JSON object."
            )


def _tool_result_problems(messages: list[Body]) -> Iterator[str]:
    """Each turn's toolResult blocks answer exactly the previous assistant turn's toolUse."""
    for index, message in enumerate(messages):
        asked = _tool_use_ids(messages[index - 1]) if index > 0 else []
        answered = [
            (position, block["toolResult"]["toolUseId"])
            for position, block in enumerate(message["content"])
            if "toolResult" in block
        ]
        for position, tool_use_id in answered:
            if tool_use_id not in asked:
                yield (
                    f"The toolUseId {tool_use_id} of the toolResult block at "
                    f"messages.{index}.content.{position} does not match any toolUse block "
                    "of the previous assistant turn."
                )
        if len(answered) > len(asked):
            yield (
                f"The number of toolResult blocks at messages.{index}.content exceeds the "
                "number of toolUse blocks of previous turn."
            )
        answered_ids = {tool_use_id for _, tool_use_id in answered}
        missing = [tool_use_id for tool_use_id in asked if tool_use_id not in answered_ids]
        if missing:
            yield (
                f"Expected toolResult blocks at messages.{index}.content for the following Ids: "
                f"{', '.join(missing)}"
            )


def _tool_use_ids(message: Body) -> list[str]:
    if message["role"] != "assistant":
        return []
    return [block["toolUse"]["toolUseId"] for block in message["content"] if "toolUse" in block]


def _blocks(messages: list[Body]) -> Iterator[tuple[int, int, Body]]:
    """Every content block with its message index and its position in the message."""
    for index, message in enumerate(messages):
        for position, block in enumerate(message["content"]):
            yield index, position, block
