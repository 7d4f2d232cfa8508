"""Where the scaler learns how many replicas are ready and how many are on their way.

Signals alone cannot tell a replica that is loading its weights from one that does not exist:
both are absent from ``/metrics``. The policy needs the difference (a signal already answered
by pending replicas must not scale up again), so the controller asks a :class:`ReplicaSource`:
the Kubernetes API in a cluster, the emulator pool in tests and benchmarks.
"""

from __future__ import annotations

from typing import Protocol

from tiergate.scaling.snapshot import ReplicaCount


class ReplicaSource(Protocol):
    """Ready and pending replicas of one deployment at ``now`` (the controller's clock)."""

    async def count(self, deployment: str, now: float) -> ReplicaCount | None:
        """``None`` when the source cannot say (the controller then uses what it scraped)."""
        ...
