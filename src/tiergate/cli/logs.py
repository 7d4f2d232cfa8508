"""Logging of the long-running commands (``serve``, ``emulate``, ``scale --serve``).

The format is decided once, here: plain text for a person at a terminal, one JSON object per
line when stderr is a file or a pipe (a container's log, a collector). A record may carry
structured ``fields`` (the access log does): JSON lines include them as keys, text lines
append them as ``name=value`` words. Only the chosen format is built, once per line.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

# The attribute of a log record holding its structured fields (``extra={FIELDS: {...}}``).
FIELDS = "fields"


def _json_dumps(line: dict[str, Any]) -> str:
    return json.dumps(line, default=str)


try:  # orjson (the gateway's JSON library) is 5-10x faster, on every access-log line
    import orjson
except ImportError:  # pragma: no cover - installed with the gateway extra
    pass
else:

    def _json_dumps(line: dict[str, Any]) -> str:
        return orjson.dumps(line, default=str).decode()


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the record's fields."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""

    def _time(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # strftime once a second, not once a line
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self._time(record),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,  # which worker, under serve --workers
            "message": record.getMessage(),
        }
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _json_dumps(line)


class TextFormatter(logging.Formatter):
    """``time level logger: message``, then a record's fields as ``name=value`` words."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, FIELDS, None)
        if not isinstance(fields, dict):
            return text
        words = " ".join(f"{name}={value}" for name, value in fields.items() if value is not None)
        return f"{text} {words}"


def setup(level: str, *, json_lines: bool | None = None) -> None:
    """Log to stderr at ``level``, as JSON lines unless stderr is a terminal (``json_lines``
    forces either); libraries that would print secrets stay at INFO or above."""
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # botocore's debug log prints each canonical request, AWS session token included.
    logging.getLogger("botocore").setLevel(max(logging.INFO, logging.getLogger().level))
