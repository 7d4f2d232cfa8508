"""One gateway replica's budget book, as a process of its own (run by test_redis.py).

``python -m tests.ledger_budget.replica URL REQUESTS AMOUNT LIMIT SEED``: prints ``ready``,
waits (at most 20 s) for the go signal on the Redis list ``go``, makes REQUESTS concurrent
reservations of AMOUNT against a key budget of LIMIT and prints the number admitted; then, on
the signal ``settle``, settles each admitted one to a random actual cost no larger and prints
``settled``. (Settling frees what the actual cost left over, so the count is only exact while
every replica is still reserving.)
"""

from __future__ import annotations

import asyncio
import random
import sys
import time

from redis.asyncio import Redis

from tiergate.ledger.budget import Budget, Reservation
from tiergate.ledger.budget_redis import RedisBudgetBook
from tiergate.ledger.records import Scope, ScopeKind


async def main(url: str, requests: int, amount: float, limit: float, seed: int) -> None:
    book = RedisBudgetBook.from_url(url, timeout_s=5.0)
    signal = Redis.from_url(url, socket_timeout=30.0)
    try:
        budget = Budget(Scope(ScopeKind.KEY, "shared"), limit)
        print("ready", flush=True)
        if await signal.blpop(["go"], timeout=20) is None:
            raise SystemExit("no go signal within 20 s")
        now = time.time()
        results = await asyncio.gather(
            *(book.reserve([budget], amount, now) for _ in range(requests))
        )
        held = [r for r in results if isinstance(r, Reservation)]
        print(len(held), flush=True)
        if await signal.blpop(["settle"], timeout=20) is None:
            raise SystemExit("no settle signal within 20 s")
        rng = random.Random(seed)
        await asyncio.gather(*(book.settle(r, rng.uniform(0, amount), now) for r in held))
        print("settled", flush=True)
    finally:
        await signal.aclose()
        await book.aclose()


if __name__ == "__main__":
    url, requests, amount, limit, seed = sys.argv[1:6]
    asyncio.run(main(url, int(requests), float(amount), float(limit), int(seed)))
