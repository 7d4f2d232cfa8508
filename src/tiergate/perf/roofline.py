"""A roofline model of one serving engine step, calibrated against published figures.

An engine step processes a batch of tokens: chunks of prompts being prefilled and one token for
each sequence being decoded. Its time is the larger of

- compute: 2 FLOPs per active parameter per token, plus attention (4 · heads · head_dim FLOPs
  per token per attended context token per layer), over the GPUs' dense peak times an
  efficiency factor;
- memory: the weights read once per step (for MoE models, only the experts the batch touches),
  plus the KV cache read for every attended context token and written for every new token, over
  HBM bandwidth times an efficiency factor;

plus a fixed per-step overhead (scheduling, sampling, kernel launches) and, with tensor
parallelism, two all-reduces per layer. ``docs/performance-model.md`` compares its predictions
with every published anchor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tiergate.perf.catalog import GPU, ModelSpec

# Sequential read speeds of the seed's storage table, bytes per second.
STORAGE_BYTES_PER_S = {"nvme": 3.5e9, "s3": 1.0e9, "fsx": 1.0e9, "efs": 0.2e9}
# Engine start before weights load: process, CUDA context, then graph capture and warm-up.
ENGINE_INIT_S = 30.0
# Memory the engine keeps for activations, CUDA graphs and the allocator, per GPU.
ACTIVATION_RESERVE_BYTES = 4e9


@dataclass(frozen=True, slots=True)
class Efficiency:
    """Achieved shares of peak, and fixed costs. Defaults are calibrated (see the docs)."""

    compute_bf16: float = 0.65
    compute_fp8: float = 0.40
    bandwidth: float = 0.85
    # Paged-attention kernels stream the KV cache less efficiently than GEMMs stream weights.
    kv_bandwidth: float = 0.80
    step_overhead_s: float = 0.002
    # Scheduling, sampling and detokenizing grow with the number of sequences in the batch.
    sequence_overhead_s: float = 20e-6
    allreduce_latency_s: float = 10e-6


class PerfModel:
    """Step times, KV capacity and load time of ``model`` on ``tp`` GPUs of one kind."""

    def __init__(
        self,
        model: ModelSpec,
        gpu: GPU,
        tp: int = 1,
        *,
        gpu_memory_utilization: float = 0.9,
        kv_bytes: float = 2.0,
        efficiency: Efficiency | None = None,
    ) -> None:
        if tp < 1:
            raise ValueError("tp must be at least 1")
        if not 0 < gpu_memory_utilization <= 1:
            raise ValueError("gpu_memory_utilization must be in (0, 1]")
        self.model = model
        self.gpu = gpu
        self.tp = tp
        self.efficiency = efficiency or Efficiency()
        eff = self.efficiency
        fp8 = model.fp8 and gpu.fp8_tflops is not None
        peak = gpu.fp8_tflops if fp8 and gpu.fp8_tflops else gpu.bf16_tflops
        self._flops = tp * peak * 1e12 * (eff.compute_fp8 if fp8 else eff.compute_bf16)
        self._bandwidth = tp * gpu.bandwidth_tb_s * 1e12 * eff.bandwidth
        self._kv_bandwidth = tp * gpu.bandwidth_tb_s * 1e12 * eff.kv_bandwidth
        self.weight_bytes = int(model.weight_bytes)
        self.kv_bytes_per_token = int(model.layers * model.kv_values_per_layer * kv_bytes)
        usable = gpu.memory_bytes * gpu_memory_utilization * tp
        free = usable - self.weight_bytes - ACTIVATION_RESERVE_BYTES * tp
        self.kv_capacity_tokens = max(0, int(free // self.kv_bytes_per_token))
        # GEMM FLOPs per token (two per active parameter), and attention FLOPs per (query
        # token, attended context token), all layers.
        self._gemm_flops_per_token = 2 * model.active_params_b * 1e9
        self._attn_flops = 4 * model.heads * min(model.head_dim, 544) * model.layers
        dense_params = (model.total_params_b - model.expert_params_b) * 1e9
        self._dense_bytes = dense_params * model.weight_bytes_per_param
        self._expert_bytes = model.expert_params_b * 1e9 * model.weight_bytes_per_param

    @property
    def fits(self) -> bool:
        """Whether the weights fit with room for at least one full-length sequence."""
        return self.kv_capacity_tokens >= 4096

    def _weights_read(self, tokens: int) -> float:
        """Bytes of weights a step over ``tokens`` tokens reads (MoE: the experts touched)."""
        model = self.model
        if model.experts == 0:
            return self.weight_bytes
        # Expected share of routed experts hit at least once by `tokens` tokens choosing k each.
        share = 1 - (1 - model.experts_per_token / model.experts) ** tokens
        return self._dense_bytes + self._expert_bytes * share

    def step_time(
        self, prefill: Sequence[tuple[int, int]], decode_contexts: Sequence[int]
    ) -> float:
        """Seconds of one engine step.

        ``prefill`` lists ``(new_tokens, tokens_already_in_context)`` for each prompt chunk
        prefilled in this step; ``decode_contexts`` the context length of each sequence that
        generates one token. An empty step costs nothing.
        """
        window = self.model.attention_window
        new = 0
        attended_prefill = 0.0  # a chunk attends to what came before it and half of itself
        before_read = 0  # the KV those chunks read
        for chunk, before in prefill:
            seen = before if window is None or before < window else window
            new += chunk
            attended_prefill += chunk * (seen + chunk / 2)
            before_read += seen
        tokens = new + len(decode_contexts)
        if tokens == 0:
            return 0.0
        if window is None:
            attended = sum(decode_contexts)
        else:
            attended = sum(ctx if ctx < window else window for ctx in decode_contexts)
        flops = self._gemm_flops_per_token * tokens
        flops += self._attn_flops * (attended + attended_prefill)
        kv_read = attended + before_read
        memory = self._weights_read(tokens) / self._bandwidth
        memory += (kv_read + tokens) * self.kv_bytes_per_token / self._kv_bandwidth
        step = max(flops / self._flops, memory)
        overhead = self.efficiency.step_overhead_s
        overhead += self.efficiency.sequence_overhead_s * (len(prefill) + len(decode_contexts))
        return step + overhead + self._communication(tokens)

    def _communication(self, tokens: int) -> float:
        if self.tp == 1:
            return 0.0
        # Two all-reduces of the hidden state per layer (ring: 2 (tp-1)/tp of the data).
        volume = tokens * self.model.hidden * 2 * 2 * (self.tp - 1) / self.tp
        per_layer = 2 * self.efficiency.allreduce_latency_s + volume / (
            self.gpu.interconnect_gb_s * 1e9
        )
        return self.model.layers * per_layer

    def prefill_time(self, tokens: int) -> float:
        """Seconds to prefill one prompt of ``tokens`` tokens alone (time to first token)."""
        return self.step_time([(tokens, 0)], [])

    def decode_step_time(self, contexts: Sequence[int]) -> float:
        """Seconds of a decode-only step for sequences with these context lengths."""
        return self.step_time([], contexts)

    def saturated_throughput(
        self, input_tokens: int, output_tokens: int, max_num_seqs: int = 256
    ) -> float:
        """Output tokens per second at steady state under unbounded load.

        The batch holds as many sequences as ``max_num_seqs`` and the KV cache allow (each at
        its average context); every step also prefills the prompts that replace finished
        sequences, ``batch · input / output`` tokens on average.
        """
        average_context = input_tokens + output_tokens // 2
        by_memory = self.kv_capacity_tokens // max(1, input_tokens + output_tokens)
        batch = max(1, min(max_num_seqs, by_memory))
        prefill_tokens = round(batch * input_tokens / output_tokens)
        step = self.step_time([(prefill_tokens, 0)], [average_context] * batch)
        return batch / step

    def load_time(self, storage: str = "nvme") -> float:
        """Seconds from start to serving: engine init plus weights read from ``storage``."""
        try:
            speed = STORAGE_BYTES_PER_S[storage]
        except KeyError:
            raise ValueError(
                f"unknown storage '{storage}'; known: {', '.join(STORAGE_BYTES_PER_S)}"
            ) from None
        return ENGINE_INIT_S + self.weight_bytes / speed
