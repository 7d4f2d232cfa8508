"""The two log formats of the long-running commands carry a record's structured fields."""

from __future__ import annotations

import json
import logging

from tiergate.cli.logs import FIELDS, JsonFormatter, TextFormatter


def _record(fields: dict[str, object]) -> logging.LogRecord:
    record = logging.LogRecord("tiergate.access", logging.INFO, __file__, 1, "request", (), None)
    setattr(record, FIELDS, fields)
    return record


def test_a_json_line_has_the_fields_as_keys() -> None:
    line = json.loads(JsonFormatter().format(_record({"status": 200, "key_id": None})))
    assert line["logger"] == "tiergate.access"
    assert line["message"] == "request"
    assert (line["status"], line["key_id"]) == (200, None)
    assert line["time"].endswith("Z")


def test_a_text_line_has_the_fields_as_words_without_the_empty_ones() -> None:
    text = TextFormatter().format(_record({"request_id": "r-1", "status": 200, "key_id": None}))
    assert text.endswith("tiergate.access: request request_id=r-1 status=200")
