"""The child of the kill -9 test: records without end into a SQLite ledger, printing after each
batch how many records it has recorded and how many the store has committed, until killed."""

from __future__ import annotations

import asyncio
import sys

from tiergate.ledger.records import RequestRecord
from tiergate.ledger.sqlite import SQLiteStore


def record(n: int) -> RequestRecord:
    return RequestRecord(
        at=1_793_491_200.0 + n,
        request_id=f"r{n}",
        key_id="k1",
        team="search",
        project=None,
        stage=None,
        model="m",
        tier="onprem",
        attempts=1,
        fallbacks="",
        input_tokens=100,
        output_tokens=20,
        cached_tokens=0,
        cache_write_tokens=0,
        cost_usd=0.25,
        latency_s=0.5,
        ttft_s=0.1,
        status=200,
        error=None,
    )


async def main(path: str) -> None:
    store = SQLiteStore(path, flush_s=0.05)
    await store.open()
    n = 0
    while True:
        for _ in range(50):
            store.record(record(n))
            n += 1
        print(f"recorded {n} written {store.stats.written}", flush=True)
        await asyncio.sleep(0.005)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
