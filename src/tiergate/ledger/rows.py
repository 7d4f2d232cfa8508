"""Records as rows of the SQL stores: the column names, in the order of the record fields."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import fields
from operator import attrgetter
from typing import Any

from tiergate.ledger.records import KeyRecord, RequestRecord, ScopeKind

REQUEST_COLUMNS = tuple(field.name for field in fields(RequestRecord))
# Column kinds of the record fields (their annotations), and the SQL type of each kind per store.
_KINDS = {"float": "real", "int": "integer", "str": "text", "tuple[str, ...]": "text"}
_CONSTRAINTS = {"key_id": " PRIMARY KEY", "key_hash": " NOT NULL UNIQUE"}
_INDEXES = ("at", "key_id, at", "team, at", "project, at")
KEY_COLUMNS = tuple(field.name for field in fields(KeyRecord))
SCOPE_COLUMNS = {ScopeKind.KEY: "key_id", ScopeKind.TEAM: "team", ScopeKind.PROJECT: "project"}

_request_values = attrgetter(*REQUEST_COLUMNS)


def request_row(record: RequestRecord) -> tuple[Any, ...]:
    values: tuple[Any, ...] = _request_values(record)
    return values


def request_from_row(row: Sequence[Any]) -> RequestRecord:
    return RequestRecord(*row)


def key_row(key: KeyRecord) -> tuple[Any, ...]:
    """``models`` as a JSON list; the other fields as they are."""
    values = [getattr(key, column) for column in KEY_COLUMNS]
    values[KEY_COLUMNS.index("models")] = json.dumps(list(key.models))
    return tuple(values)


def key_from_row(row: Sequence[Any]) -> KeyRecord:
    values = list(row)
    index = KEY_COLUMNS.index("models")
    values[index] = tuple(json.loads(values[index]))
    return KeyRecord(*values)


def schema(types: Mapping[str, str], row_id: str) -> str:
    """The stores' CREATE statements in one SQL dialect: ``types`` maps ``real``, ``integer``
    and ``text`` to its types; ``row_id`` is its auto-numbered key column's declaration."""

    def columns(record: type[Any], constraints: Mapping[str, str]) -> list[str]:
        lines = []
        for field in fields(record):
            annotation = str(field.type)
            optional = annotation.endswith(" | None")
            kind = _KINDS[annotation.removesuffix(" | None")]
            constraint = constraints.get(field.name, "" if optional else " NOT NULL")
            lines.append(f"    {field.name} {types[kind]}{constraint}")
        return lines

    indexes = "".join(
        f"CREATE INDEX IF NOT EXISTS requests_{cols.replace(', ', '_')} ON requests ({cols});\n"
        for cols in _INDEXES
    )
    requests = ",\n".join([f"    id {row_id}", *columns(RequestRecord, {})])
    keys = ",\n".join(columns(KeyRecord, _CONSTRAINTS))
    return (
        f"CREATE TABLE IF NOT EXISTS requests (\n{requests}\n);\n{indexes}"
        f"CREATE TABLE IF NOT EXISTS keys (\n{keys}\n);\n"
    )
