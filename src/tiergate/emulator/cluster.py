"""Several replicas of one emulated deployment in one process, on consecutive ports."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Self

from tiergate.emulator.config import EmulatorConfig
from tiergate.emulator.replica import Replica


class EmulatorCluster:
    """``replicas`` replicas of ``config`` on ``host``, ports ``port`` to ``port + replicas - 1``
    (``port`` 0: each on a free port). Use as ``async with``; ``urls`` are the API roots."""

    def __init__(
        self,
        config: EmulatorConfig,
        replicas: int = 1,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if replicas < 1:
            raise ValueError(f"replicas must be at least 1, got {replicas}")
        self.config = config
        # One performance model for all: it is a pure function of the config.
        perf = config.perf_model()
        self.replicas = [
            Replica(
                config,
                index,
                host=host,
                port=port + index if port else 0,
                perf=perf,
                clock=clock,
            )
            for index in range(replicas)
        ]

    @property
    def urls(self) -> list[str]:
        """The OpenAI API root of each replica, ``http://HOST:PORT/v1``."""
        return [replica.url for replica in self.replicas]

    @property
    def origins(self) -> list[str]:
        """``http://HOST:PORT`` of each replica (``/health``, ``/metrics``, ``/admin``)."""
        return [replica.origin for replica in self.replicas]

    async def start(self) -> Self:
        try:
            for replica in self.replicas:
                await replica.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self) -> None:
        for replica in self.replicas:
            await replica.close()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
