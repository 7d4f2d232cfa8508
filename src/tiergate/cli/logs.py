"""Logging of the long-running commands (``serve``, ``emulate``)."""

from __future__ import annotations

import logging


def setup(level: str) -> None:
    """Log to stderr at ``level``; libraries that would print secrets stay at INFO or above."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # botocore's debug log prints each canonical request, AWS session token included.
    logging.getLogger("botocore").setLevel(max(logging.INFO, logging.getLogger().level))
