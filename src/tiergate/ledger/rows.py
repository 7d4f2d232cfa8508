"""Records as rows of the SQL stores: the column names, in the order of the record fields."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import fields
from operator import attrgetter
from typing import Any

from tiergate.ledger.records import KeyRecord, RequestRecord, ScopeKind

REQUEST_COLUMNS = tuple(field.name for field in fields(RequestRecord))
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
