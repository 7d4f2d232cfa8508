"""The demo's three emulated tiers: vLLM-compatible emulators on free loopback ports.

Each tier is one emulated replica (``tiergate.emulator``) of the fleet's model on its own
emulated GPUs, running ``speed`` times faster than the performance model, as fast as the trace
is compressed, so that the load the engines see is the trace's. The fleet spec refers to the
tiers through environment references (``${TIERGATE_DEMO_ONPREM_URL}`` ...) that
:meth:`EmulatedTiers.env` fills in. Faults go through each replica's HTTP admin API, as an
operator would send them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from tiergate.emulator import EmulatorCluster, EmulatorConfig


@dataclass(frozen=True, slots=True)
class TierPlan:
    """One emulated tier: what it stands for, the variable its URL goes in, its hardware."""

    role: str
    env: str
    gpu: str
    tp: int = 1
    replicas: int = 1


# The seed's three tiers. The managed API is emulated as a large deployment (8 H200s) so that
# it is never the bottleneck, as a managed service would not be.
DEMO_TIERS = (
    TierPlan("on-prem", "TIERGATE_DEMO_ONPREM_URL", "H100", tp=2),
    TierPlan("cloud", "TIERGATE_DEMO_CLOUD_URL", "H100", tp=2),
    TierPlan("managed API", "TIERGATE_DEMO_API_URL", "H200", tp=8),
)


class EmulatedTiers:
    """The clusters of ``plans``, serving ``model``; start with :meth:`start`, then
    :meth:`close` (also after a failed start)."""

    def __init__(self, plans: Sequence[TierPlan], *, model: str, speed: float, seed: int) -> None:
        self.plans = tuple(plans)
        self.clusters = [
            EmulatorCluster(
                EmulatorConfig(model, plan.gpu, tp=plan.tp, speed=speed, seed=seed + 100 * i),
                replicas=plan.replicas,
            )
            for i, plan in enumerate(self.plans)
        ]

    async def start(self) -> None:
        for cluster in self.clusters:
            await cluster.start()

    async def close(self) -> None:
        for cluster in self.clusters:
            await cluster.close()

    def env(self) -> dict[str, str]:
        """The fleet's variables: each tier's OpenAI API root (its first replica's)."""
        return {
            plan.env: cluster.urls[0]
            for plan, cluster in zip(self.plans, self.clusters, strict=True)
        }

    def origins(self, role: str) -> list[str]:
        """``http://HOST:PORT`` of each replica of the tier playing ``role``."""
        for plan, cluster in zip(self.plans, self.clusters, strict=True):
            if plan.role == role:
                return cluster.origins
        raise KeyError(role)

    def max_model_len(self) -> int:
        """The longest prompt plus output every tier accepts."""
        return min(
            replica.max_model_len for cluster in self.clusters for replica in cluster.replicas
        )


async def inject(
    session: aiohttp.ClientSession, origins: Sequence[str], faults: dict[str, object]
) -> None:
    """Set ``faults`` on every replica through ``POST /admin/faults``."""
    for origin in origins:
        async with session.post(f"{origin}/admin/faults", json=faults) as response:
            response.raise_for_status()


async def heal(session: aiohttp.ClientSession, origins: Sequence[str]) -> None:
    """Clear every fault through ``POST /admin/heal``."""
    for origin in origins:
        async with session.post(f"{origin}/admin/heal") as response:
            response.raise_for_status()
