"""What one emulated vLLM replica is: model, GPU, engine settings, speed, storage, faults."""

from __future__ import annotations

from dataclasses import dataclass, field

from tiergate.emulator.faults import Faults
from tiergate.emulator.scheduler import SchedulerLimits
from tiergate.perf import PerfModel, gpu_named, model_named

# vLLM's default context length is the model's own (128K for Llama 3.1); the emulator caps it
# at what the KV cache holds instead of refusing to start as vLLM does.
DEFAULT_MAX_MODEL_LEN = 131072
DEFAULT_MAX_TOKENS = 256
STORAGES = ("nvme", "s3", "efs")


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """Settings shared by every replica of one emulated deployment.

    - ``model``, ``gpu``, ``tp``, ``gpu_memory_utilization``: what the performance model
      (``tiergate.perf``) prices; names as in its catalog.
    - ``limits``: vLLM's ``max_num_seqs``, ``max_num_batched_tokens`` and KV block size.
    - ``kv_capacity_tokens``: overrides the KV capacity the performance model computes (tests
      exhaust the cache with a small one).
    - ``max_model_len``: prompt plus ``max_tokens`` above it is a 400, as in vLLM; default the
      smaller of 131072 and the KV capacity.
    - ``speed``: how much faster than the model's times the engine runs (10: ten times).
    - ``storage``, ``cold_start``: with ``cold_start``, a replica is not ready for
      ``load_time(storage)`` model seconds after it starts (or restarts); ``load_time_s``
      replaces that time (a whole pod start: node launch, image pull and weight load).
    - ``sample_output_length``: requests without ``ignore_eos: true`` generate a length drawn
      uniformly from 1 to ``max_tokens`` (finish reason ``stop`` when shorter) instead of
      exactly ``max_tokens``.
    - ``served_model_name``: the name clients request (default: ``model``).
    - ``seed``: of each replica's random generator (plus the replica's index).
    - ``lag_tolerance_s``: how far (wall seconds) an engine may fall behind the wall clock
      before it skips ahead to it; a large value keeps engine time exactly the model's
      whatever the CPU can do (tests that compare with the performance model).
    """

    model: str
    gpu: str
    tp: int = 1
    gpu_memory_utilization: float = 0.9
    limits: SchedulerLimits = field(default_factory=SchedulerLimits)
    kv_capacity_tokens: int | None = None
    max_model_len: int | None = None
    speed: float = 1.0
    storage: str = "nvme"
    cold_start: bool = False
    load_time_s: float | None = None
    faults: Faults = field(default_factory=Faults)
    sample_output_length: bool = False
    served_model_name: str | None = None
    seed: int = 0
    lag_tolerance_s: float = 0.02

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ValueError(f"speed must be positive, got {self.speed}")
        if self.storage not in STORAGES:
            raise ValueError(f"storage must be one of {', '.join(STORAGES)}, got {self.storage}")
        if self.load_time_s is not None and self.load_time_s < 0:
            raise ValueError(f"load_time_s must be >= 0, got {self.load_time_s}")
        if self.kv_capacity_tokens is not None and self.kv_capacity_tokens < self.limits.block_size:
            raise ValueError("kv_capacity_tokens must hold at least one block")

    @property
    def name(self) -> str:
        """The model name clients request and metrics carry."""
        return self.served_model_name or self.model

    def perf_model(self) -> PerfModel:
        """The performance model of one replica; KeyError names an unknown model or GPU."""
        return PerfModel(
            model_named(self.model),
            gpu_named(self.gpu),
            self.tp,
            gpu_memory_utilization=self.gpu_memory_utilization,
        )

    def cold_start_s(self, perf: PerfModel) -> float:
        """Model seconds from a cold start to ready: ``load_time_s`` or the weights' load."""
        if self.load_time_s is not None:
            return self.load_time_s
        return perf.load_time(self.storage)

    def kv_blocks(self, perf: PerfModel) -> int:
        """KV blocks of one replica: the override, or what fits beside the weights."""
        tokens = self.kv_capacity_tokens
        if tokens is None:
            tokens = perf.kv_capacity_tokens
        blocks = tokens // self.limits.block_size
        if blocks < 1:
            raise ValueError(
                f"{self.model} does not fit on {self.tp} x {self.gpu} at "
                f"gpu_memory_utilization={self.gpu_memory_utilization}: no room for KV cache"
            )
        return blocks

    def model_len(self, kv_blocks: int) -> int:
        """The longest prompt plus output a request may ask for."""
        capacity = kv_blocks * self.limits.block_size
        return min(self.max_model_len or DEFAULT_MAX_MODEL_LEN, capacity)
