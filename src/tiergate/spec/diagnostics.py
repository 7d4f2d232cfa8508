"""Turns pydantic's validation errors into located, readable spec issues."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from tiergate.errors import SpecIssue
from tiergate.spec.yamldoc import Document, FieldPath, lost_indentation_hint

_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or ``""``."""
    options = list(candidates)
    lowered = word.lower()
    close = [c for c in options if c.lower() == lowered]
    close = close or difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    close = close or [c for c in options if len(word) >= 3 and c.lower().startswith(lowered)]
    return f" (did you mean '{close[0]}'?)" if close else ""


def issues_from_validation(
    error: ValidationError, doc: Document, root: type[BaseModel]
) -> list[SpecIssue]:
    """One issue per pydantic error, positioned in ``doc``.

    Errors at a path whose ``${ENV}`` reference did not resolve, or whose scalar could not be
    read, are left out (unless the key itself is unknown): the reference or the scalar is the
    error there, and the empty value it left is only its consequence.
    """
    details = error.errors(include_url=False)
    return [
        _issue(d, doc, root)
        for d in details
        if tuple(d["loc"]) not in doc.unresolved or d["type"] == "extra_forbidden"
    ]


def _issue(detail: ErrorDetails, doc: Document, root: type[BaseModel]) -> SpecIssue:
    path: FieldPath = tuple(detail["loc"])
    kind = detail["type"]
    value = detail.get("input")
    # A value that is, or holds, one from the environment may be a secret: never shown.
    from_env = doc.from_env(path)
    shown = "" if from_env else f", got {_show(value)}"
    if kind == "extra_forbidden":
        key = str(path[-1])
        allowed = allowed_keys(root, path[:-1])
        message = (
            f"unknown key '{key}'{did_you_mean(key, allowed)}; valid keys: {', '.join(allowed)}"
        )
        if len(path) == 1:
            hint = lost_indentation_hint(_source_lines(doc))
            message += f". {hint}" if hint else ""
        return doc.issue(path, message, of_key=True)
    if kind == "missing":
        parent = path[:-1]
        return doc.issue(parent, f"missing required key '{path[-1]}'")
    if kind == "literal_error":
        expected = detail.get("ctx", {}).get("expected", "")
        options = [
            o.strip().strip("'") for o in expected.replace(" or ", ",").split(",") if o.strip()
        ]
        hint = did_you_mean(str(value), options) if isinstance(value, str) else ""
        listed = ", ".join(f"'{o}'" for o in options)
        return doc.issue(path, f"expected one of {listed}{shown}{hint}")
    if kind in _EXPECTED:
        return doc.issue(path, f"expected {_EXPECTED[kind]}{shown}")
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        ctx = detail.get("ctx", {})
        bound = {
            "greater_than": ">",
            "greater_than_equal": ">=",
            "less_than": "<",
            "less_than_equal": "<=",
        }[kind]
        limit = next(iter(ctx.values()), "?")
        limit = f"{limit:g}" if isinstance(limit, float) else limit
        return doc.issue(path, f"expected a number {bound} {limit}{shown}")
    if kind == "too_short":
        return doc.issue(path, "expected at least one item, got an empty list")
    if kind == "string_pattern_mismatch":
        return doc.issue(path, f"{_pattern_meaning(path)}{shown}")
    if kind == "string_too_short":
        return doc.issue(path, "expected a non-empty string")
    message = detail["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if from_env:
        message = message.replace(repr(value), "(the value from the environment)")
    return doc.issue(path, message[:1].lower() + message[1:])


def _pattern_meaning(path: FieldPath) -> str:
    field = path[-1] if path else ""
    if field == "region":
        return "expected an AWS region such as 'us-east-1'"
    if field == "name":
        return "expected a name without spaces"
    return "expected a value of the documented form"


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _source_lines(doc: Document) -> str:
    # Reconstruct the top-level shape: a key with an empty value followed by a sibling key that
    # belongs under it is what a document that lost its indentation looks like.
    data = doc.data if isinstance(doc.data, dict) else {}
    ordered = sorted(data, key=lambda k: doc.position((k,), of_key=True).line)
    return "\n".join(f"{key}:" if data[key] is None else f"{key}: x" for key in ordered)


def allowed_keys(root: type[BaseModel], path: FieldPath) -> list[str]:
    """The YAML keys the spec accepts at ``path`` (a mapping), in declaration order."""
    model: type[BaseModel] | None = root
    for part in path:
        if model is None:
            return []
        if isinstance(part, int):
            continue
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        model = _model_in(field.annotation) if field is not None else None
    if model is None:
        return []
    return [field.alias or name for name, field in model.model_fields.items()]


def _model_in(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (list, typing.Union, types.UnionType, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
