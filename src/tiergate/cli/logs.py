"""Logging of the long-running commands (``serve``, ``emulate``, ``scale --serve``).

The format is decided once, here: plain text for a person at a terminal, one JSON object per
line when stderr is a file or a pipe (a container's log, a collector). A record may carry
structured ``lines`` (the access log's, one per request): JSON lines include their fields as
keys, text lines append them as ``name=value`` words. Only the chosen format is built.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

# The attribute of a log record holding structured lines (``extra={LINES: [(time, fields)]}``):
# the access log writes the requests of one turn of the event loop as one record, a line each.
LINES = "lines"

Lines = list[tuple[float, dict[str, Any]]]


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
    """One JSON object per line: time, level, logger, pid, message, and the line's fields."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""

    def _time(self, created: float) -> str:
        second = int(created)
        if second != self._second:  # strftime once a second, not once a line
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int((created - second) * 1000):03d}Z"

    def _line(self, record: logging.LogRecord, created: float, message: str) -> dict[str, Any]:
        return {
            "time": self._time(created),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,  # which worker, under serve --workers
            "message": message,
        }

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        lines: Lines | None = getattr(record, LINES, None)
        if lines is not None:
            return "\n".join(
                _json_dumps(self._line(record, created, message) | fields)
                for created, fields in lines
            )
        line = self._line(record, record.created, message)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _json_dumps(line)


class TextFormatter(logging.Formatter):
    """``time level logger: message``; structured lines add their fields as ``name=value``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        lines: Lines | None = getattr(record, LINES, None)
        if lines is None:
            return super().format(record)
        message = record.getMessage()
        return "\n".join(
            f"{self._stamp(created)} {record.levelname} {record.name}: {message} "
            + " ".join(f"{name}={value}" for name, value in fields.items() if value is not None)
            for created, fields in lines
        )

    def _stamp(self, created: float) -> str:
        stamp = time.strftime(self.default_time_format, time.localtime(created))
        return f"{stamp},{int((created - int(created)) * 1000):03d}"  # as asctime reads


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
