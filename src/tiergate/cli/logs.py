"""Logging of the long-running commands (``serve``, ``emulate``, ``scale --serve``).

The format is decided once, here: plain text for a person at a terminal, one JSON object per
line when stderr is a file or a pipe (a container's log, a collector). A record may carry
structured ``fields`` (the access log does): JSON lines include them as keys, text lines show
the message, which says the same in words.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

# The attribute of a log record holding its structured fields (``extra={FIELDS: {...}}``).
FIELDS = "fields"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
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
        return json.dumps(line, default=str)


def setup(level: str, *, json_lines: bool | None = None) -> None:
    """Log to stderr at ``level``, as JSON lines unless stderr is a terminal (``json_lines``
    forces either); libraries that would print secrets stay at INFO or above."""
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # botocore's debug log prints each canonical request, AWS session token included.
    logging.getLogger("botocore").setLevel(max(logging.INFO, logging.getLogger().level))
