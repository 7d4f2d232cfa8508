"""Fixtures of the transfer tests: a recording ``sleep`` and a helper that runs a transfer."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tiergate.modelcache.plan import Plan
from tiergate.modelcache.sources.http import HttpSource
from tiergate.modelcache.transfer import TransferSettings, TransferStats, transfer


class Sleeps:
    """A ``sleep`` that records the delays asked for and does not wait."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@dataclass
class Run:
    stats: TransferStats
    plan: Plan
    progress: list[int] = field(default_factory=list)
    done: list[str] = field(default_factory=list)  # files announced complete, in order


async def fetch(
    url: str, staging: Path, settings: TransferSettings, sleep: Sleeps | None = None
) -> Run:
    """List ``url`` and transfer all of it into ``staging``, with a seeded jitter."""
    source = HttpSource(url)
    progress: list[int] = []
    done: list[str] = []
    try:
        plan = Plan(url, tuple(await source.list_files()))
        stats = await transfer(
            source,
            plan,
            staging,
            settings,
            progress.append,
            on_file_done=lambda entry: done.append(entry.path),
            rng=random.Random(7),
            sleep=sleep or Sleeps(),
        )
    finally:
        await source.close()
    return Run(stats, plan, progress, done)
