"""Run one transfer from a manifest URL, for the kill -9 test: ``_child.py URL STAGING CONNECTIONS
CHUNK_BYTES``. The test kills this process mid-transfer and resumes in its own."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tiergate.modelcache.plan import Plan
from tiergate.modelcache.sources.http import HttpSource
from tiergate.modelcache.transfer import TransferSettings, transfer


async def main(url: str, staging: Path, connections: int, chunk_bytes: int) -> None:
    source = HttpSource(url)
    try:
        plan = Plan(url, tuple(await source.list_files()))
        settings = TransferSettings(connections=connections, chunk_bytes=chunk_bytes)
        await transfer(source, plan, staging, settings)
    finally:
        await source.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
