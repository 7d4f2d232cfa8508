"""The fleet spec's ``deployments`` section: how each self-hosted tier's engines run.

What ``tiergate simulate`` (and later ``render``) needs beyond the gateway's view of a tier:
the GPUs and tensor parallelism of one replica, how many replicas run when no scaling entry
sizes the deployment, the node pools its pods may use, where its weights load from, and
vLLM's engine settings. A tier with no entry here is not simulated as GPUs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tiergate.spec.base import SpecModel

Storage = Literal["nvme", "s3", "fsx", "efs", "hub"]


class EngineSettings(SpecModel):
    """vLLM's scheduler and memory settings, with vLLM's defaults."""

    max_num_seqs: int = Field(default=256, ge=1)
    max_num_batched_tokens: int = Field(default=8192, ge=1)
    block_size: int = Field(default=16, ge=1)
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)


class Deployment(SpecModel):
    """The engines behind one tier of ``models[]``.

    ``deployment`` is the Kubernetes Deployment's name, which ``scaling[].deployment`` refers
    to (default: the tier's name). Without ``nodePools`` the replicas are static: always
    running from the start, on GPUs priced by the tier's ``pricing.gpuHourUsd`` if given.
    """

    tier: str = Field(min_length=1)
    deployment: str | None = Field(default=None, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    gpu: str = Field(min_length=1)
    tp: int = Field(default=1, ge=1, le=64)
    replicas: int = Field(default=1, ge=0)
    node_pools: list[str] = Field(default_factory=list)
    storage: Storage = "s3"
    engine: EngineSettings = Field(default_factory=EngineSettings)

    @property
    def name(self) -> str:
        return self.deployment or self.tier
