"""Catalog of GPUs, cloud instance types and models, with dated prices and sources.

Each figure carries its public source (datasheets, cloud price pages) in its ``source``
field, so that the package stands alone. Dense TFLOPS only: sparse figures are twice as high and no
serving engine reaches them. Values marked ``assumed`` in a model's ``notes`` are not from a
published configuration and should be checked before relying on them.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class GPU:
    """One accelerator: memory, bandwidth and dense peak compute."""

    name: str
    memory_gb: float  # decimal GB, as vendors state it
    bandwidth_tb_s: float
    bf16_tflops: float
    fp8_tflops: float | None  # None: no FP8 tensor cores (FP8 weights run as BF16)
    interconnect_gb_s: float  # per-GPU NVLink (or PCIe) bandwidth, for tensor parallelism
    source: str

    @property
    def memory_bytes(self) -> float:
        return self.memory_gb * 1e9


@dataclass(frozen=True, slots=True)
class InstanceType:
    """A cloud instance type: which GPUs, how many, its vCPUs and its hourly prices.

    ``vcpus`` is what EC2's vCPU-based quotas count (AWS instance-type pages).
    """

    name: str
    gpu: str
    gpus: int
    on_demand_usd_h: float | None
    spot_usd_h: float | None
    price_date: str
    source: str
    vcpus: int

    @property
    def quota_bucket(self) -> str:
        """The EC2 vCPU quota family the type counts against: ``P`` for p* types ("Running
        On-Demand P instances", "All P Spot Instance Requests"), ``G`` for g* types ("Running
        On-Demand G and VT instances", "All G and VT Spot Instance Requests")."""
        return "P" if self.name.startswith("p") else "G"

    @property
    def on_demand_usd_per_gpu_h(self) -> float | None:
        return None if self.on_demand_usd_h is None else self.on_demand_usd_h / self.gpus


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model's size and shape, as far as serving cost depends on them.

    ``kv_values_per_layer`` is the number of values cached per token and layer: K and V for
    every KV head (2 · kv_heads · head_dim) or, for multi-head latent attention (MLA), the
    compressed latent plus its rotary part (576 for DeepSeek-V3-style models).
    """

    name: str
    total_params_b: float
    active_params_b: float
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    kv_values_per_layer: int
    weight_bytes_per_param: float  # 2 BF16, 1 FP8, ~0.5 INT4
    experts: int = 0  # routed experts per MoE layer (0: dense)
    experts_per_token: int = 0
    expert_params_b: float = 0.0  # parameters in routed experts, all layers
    attention_window: int | None = None  # sparse attention: tokens attended per query
    notes: str = ""

    @property
    def weight_bytes(self) -> float:
        return self.total_params_b * 1e9 * self.weight_bytes_per_param

    @property
    def fp8(self) -> bool:
        return self.weight_bytes_per_param <= 1


GPUS: dict[str, GPU] = {
    g.name: g
    for g in (
        GPU("H100", 80, 3.35, 989, 1979, 900, "NVIDIA H100 SXM spec"),
        GPU("H200", 141, 4.8, 989, 1979, 900, "NVIDIA H200 SXM spec"),
        GPU("A100-80GB", 80, 2.039, 312, None, 600, "NVIDIA A100 datasheet"),
        GPU("A100-40GB", 40, 1.555, 312, None, 600, "NVIDIA A100 datasheet"),
        GPU("L40S", 48, 0.864, 362, 733, 64, "NVIDIA L40S datasheet (PCIe Gen4 x16)"),
        GPU("B200", 192, 8.0, 2250, 4500, 1800, "NVIDIA HGX B200 (1,000 W)"),
    )
}

_GPU_ALIASES = {"H100-SXM": "H100", "H200-SXM": "H200", "A100": "A100-80GB"}

INSTANCES: dict[str, InstanceType] = {
    i.name: i
    for i in (
        # After the June 2025 P4/P5 price cut; spot: the seed's us-east-2 observation.
        InstanceType("p5.48xlarge", "H100", 8, 55.04, 14.0, "2025-06", "AWS price cut; seed (spot $13-15/h, us-east-2)", vcpus=192),
        InstanceType("p5en.48xlarge", "H200", 8, 63.296, None, "2025-06", "AWS price tables (2nd)", vcpus=192),
        InstanceType("p4d.24xlarge", "A100-40GB", 8, 21.96, None, "2025-06", "AWS price tables (2nd)", vcpus=96),
        InstanceType("g6e.xlarge", "L40S", 1, 1.861, None, "2025", "AWS price tables (2nd)", vcpus=4),
        InstanceType("g6e.12xlarge", "L40S", 4, 10.49, None, "2025", "AWS price tables (2nd)", vcpus=48),
        InstanceType("g6e.48xlarge", "L40S", 8, 30.13, None, "2025", "AWS price tables (2nd)", vcpus=192),
        InstanceType("p6-b200.48xlarge", "B200", 8, None, None, "-", "price not in our sources", vcpus=192),
    )
}  # fmt: skip

MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec("meta-llama/Llama-3.1-8B-Instruct", 8.03, 8.03, 32, 4096, 32, 8, 128, 2 * 8 * 128, 2),
        ModelSpec("meta-llama/Llama-3.1-70B-Instruct", 70.6, 70.6, 80, 8192, 64, 8, 128, 2 * 8 * 128, 2),
        ModelSpec("Qwen/Qwen3-32B", 32.8, 32.8, 64, 5120, 64, 8, 128, 2 * 8 * 128, 2),
        ModelSpec("Qwen/Qwen3-32B-FP8", 32.8, 32.8, 64, 5120, 64, 8, 128, 2 * 8 * 128, 1),
        ModelSpec(
            "deepseek-ai/DeepSeek-V3.2", 671, 37, 61, 7168, 128, 1, 576, 576, 1,
            experts=256, experts_per_token=8, expert_params_b=654, attention_window=2048,
            notes="MLA (512 latent + 64 rotary cached per layer); DeepSeek sparse attention "
            "keeps 2,048 tokens per query; FP8 weights",
        ),
        ModelSpec(
            "zai-org/GLM-5-FP8", 744, 40, 78, 6144, 64, 1, 576, 576, 1,
            experts=256, experts_per_token=8, expert_params_b=720, attention_window=2048,
            notes="744B/40B active per the seed and release notes; layer count, widths and "
            "MLA-style cache assumed from its glm_moe_dsa architecture",
        ),
        ModelSpec(
            "moonshotai/Kimi-K2.5", 1040, 32, 61, 7168, 64, 1, 576, 576, 0.5625,
            experts=384, experts_per_token=8, expert_params_b=1020,
            notes="DeepSeek-V3-style MLA; INT4 W4A16 experts (0.5 byte) with BF16 attention, "
            "averaged to 0.5625 byte per parameter (assumed)",
        ),
    )
}  # fmt: skip

_MODEL_ALIASES = {
    "llama-3.1-8b": "meta-llama/Llama-3.1-8B-Instruct",
    "llama-3.1-70b": "meta-llama/Llama-3.1-70B-Instruct",
    "meta-llama/Llama-3.1-8B": "meta-llama/Llama-3.1-8B-Instruct",
    "meta-llama/Llama-3.1-70B": "meta-llama/Llama-3.1-70B-Instruct",
    "qwen3-32b": "Qwen/Qwen3-32B",
    "qwen3-32b-fp8": "Qwen/Qwen3-32B-FP8",
    "deepseek-v3.2": "deepseek-ai/DeepSeek-V3.2",
    "glm-5": "zai-org/GLM-5-FP8",
    "kimi-k2.5": "moonshotai/Kimi-K2.5",
}


def _lookup(table: dict[str, T], aliases: dict[str, str], name: str, kind: str) -> T:
    by_lower = {key.lower(): key for key in (*table, *aliases)}
    key = by_lower.get(name.lower())
    if key is not None:
        return table[aliases.get(key, key)]
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.5)
    hint = f" (did you mean '{by_lower[close[0]]}'?)" if close else ""
    raise KeyError(f"unknown {kind} '{name}'{hint}; known: {', '.join(table)}")


def gpu_named(name: str) -> GPU:
    """The GPU called ``name`` (case-insensitive); ``KeyError`` with a suggestion otherwise."""
    return _lookup(GPUS, _GPU_ALIASES, name, "GPU")


def model_named(name: str) -> ModelSpec:
    """The model called ``name`` (its Hugging Face id or a short alias)."""
    return _lookup(MODELS, _MODEL_ALIASES, name, "model")


def instance_named(name: str) -> InstanceType:
    """The instance type called ``name``."""
    return _lookup(INSTANCES, {}, name, "instance type")
