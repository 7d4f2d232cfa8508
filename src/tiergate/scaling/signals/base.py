"""The one method every signal reader has."""

from __future__ import annotations

from typing import Protocol

from tiergate.scaling.snapshot import Role, Snapshot


class SignalReader(Protocol):
    """Reads one deployment's signals now; never raises for missing data (``None`` + a note)."""

    async def read(
        self,
        deployment: str,
        role: Role,
        *,
        ready: int,
        pending: int = 0,
        pending_ready_at: tuple[float, ...] = (),
        now: float,
    ) -> Snapshot:
        """A snapshot at ``now`` (the caller's clock) of ``deployment``, whose ``ready`` and
        ``pending`` replica counts the caller knows (from Kubernetes, or the simulator)."""
        ...
