"""The two log formats of the long-running commands: structured lines keep their fields."""

from __future__ import annotations

import json
import logging

from tiergate.cli.logs import LINES, JsonFormatter, TextFormatter

AT = 1_765_000_000.25  # a time with milliseconds


def _record(*lines: dict[str, object]) -> logging.LogRecord:
    record = logging.LogRecord("tiergate.access", logging.INFO, __file__, 1, "request", (), None)
    setattr(record, LINES, [(AT + n, fields) for n, fields in enumerate(lines)])
    return record


def test_each_structured_line_is_a_json_object_with_its_fields_as_keys() -> None:
    text = JsonFormatter().format(_record({"status": 200, "key_id": None}, {"status": 404}))
    first, second = (json.loads(line) for line in text.splitlines())
    assert (first["logger"], first["message"], first["level"]) == (
        "tiergate.access",
        "request",
        "INFO",
    )
    assert (first["status"], first["key_id"], second["status"]) == (200, None, 404)
    assert first["time"].endswith(".250Z")
    assert first["time"] != second["time"]  # each line keeps its own time


def test_each_structured_line_is_a_text_line_with_its_fields_as_words() -> None:
    text = TextFormatter().format(_record({"request_id": "r-1", "status": 200, "key_id": None}))
    assert text.endswith(",250 INFO tiergate.access: request request_id=r-1 status=200")


def test_a_plain_record_is_one_line_in_either_format() -> None:
    record = logging.LogRecord("tiergate.serve", logging.WARNING, __file__, 1, "x %d", (1,), None)
    assert json.loads(JsonFormatter().format(record))["message"] == "x 1"
    assert TextFormatter().format(record).endswith("WARNING tiergate.serve: x 1")
