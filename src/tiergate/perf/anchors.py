"""Published (and measured) figures the performance model is compared with.

``python -m tiergate.perf.anchors`` prints the comparison that docs/performance-model.md shows.
Anchors marked ``calibrated`` were used to choose :class:`Efficiency`'s defaults (a grid search
minimising the largest relative error); the tests pin each of them within ±25%. The others are
shown for context with the reason they cannot be matched closely.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from tiergate.perf.catalog import MODELS, ModelSpec, gpu_named
from tiergate.perf.roofline import PerfModel

_L8 = MODELS["meta-llama/Llama-3.1-8B-Instruct"]
_L70 = MODELS["meta-llama/Llama-3.1-70B-Instruct"]
# Published FP8 runs of models the catalog lists in BF16.
_L8_FP8 = replace(_L8, name="Llama-3.1-8B FP8", weight_bytes_per_param=1)
_L70_FP8 = replace(_L70, name="Llama-3.3-70B FP8", weight_bytes_per_param=1)
_QWEN3_8B = ModelSpec("Qwen/Qwen3-8B", 8.2, 8.2, 36, 4096, 32, 8, 128, 2 * 8 * 128, 2)


@dataclass(frozen=True, slots=True)
class Anchor:
    name: str
    source: str
    unit: str
    published: float
    predict: Callable[[], float]
    calibrated: bool = True
    note: str = ""


def _model(model: ModelSpec, gpu: str, tp: int = 1, kv_bytes: float = 2.0) -> PerfModel:
    return PerfModel(model, gpu_named(gpu), tp, kv_bytes=kv_bytes)


def _mixed_step_ms(model: PerfModel, concurrency: int, isl: int, osl: int) -> float:
    # At steady state each step also prefills the prompts replacing finished sequences.
    prefill = round(concurrency * isl / osl)
    return model.step_time([(prefill, 0)], [isl + osl // 2] * concurrency) * 1000


def _nim70() -> PerfModel:
    return _model(_L70_FP8, "H100", 2, kv_bytes=1)


TRT = "TensorRT-LLM perf-overview (~v1.0), max throughput, FP8"
NIM = "NVIDIA NIM benchmarking docs v1.8.0, Llama-3.3-70B FP8 TP2 on 2xH100, ISL/OSL 5000/500"
GPUSTACK = "GPUStack perf-lab, vLLM 0.11.0"
MEASURED = "bench/gpu/calibrate.py on an H200 (plain PyTorch, Llama-8B shape, random weights)"

ANCHORS: tuple[Anchor, ...] = (
    Anchor("Llama-3.1-8B FP8, 1000/1000, H100", TRT, "out tok/s", 15220,
           lambda: _model(_L8_FP8, "H100", kv_bytes=1).saturated_throughput(1000, 1000, 2048)),
    Anchor("Llama-3.1-8B FP8, 1000/1000, H200", TRT, "out tok/s", 17744,
           lambda: _model(_L8_FP8, "H200", kv_bytes=1).saturated_throughput(1000, 1000, 2048)),
    Anchor("Llama-3.1-8B FP8, 2048/2048, H100", TRT, "out tok/s", 9305,
           lambda: _model(_L8_FP8, "H100", kv_bytes=1).saturated_throughput(2048, 2048, 2048)),
    Anchor("Llama-3.1-8B FP8, 2048/2048, H200", TRT, "out tok/s", 12194,
           lambda: _model(_L8_FP8, "H200", kv_bytes=1).saturated_throughput(2048, 2048, 2048)),
    Anchor("Llama-3.3-70B FP8, 1000/1000, H200 TP1", TRT, "out tok/s", 2909,
           lambda: _model(_L70_FP8, "H200", kv_bytes=1).saturated_throughput(1000, 1000, 2048)),
    Anchor("Llama-3.3-70B FP8, 1000/1000, H100 TP2", TRT, "out tok/s", 4205,
           lambda: _model(_L70_FP8, "H100", 2, kv_bytes=1).saturated_throughput(1000, 1000, 2048)),
    Anchor("c=1 inter-token latency", NIM, "ms", 18.6,
           lambda: _nim70().decode_step_time([5250]) * 1000),
    Anchor("c=1 time to first token (5,000-token prompt)", NIM, "ms", 407,
           lambda: _nim70().prefill_time(5000) * 1000),
    Anchor("c=25 inter-token latency (steps mixing prefill)", NIM, "ms", 38.8,
           lambda: _mixed_step_ms(_nim70(), 25, 5000, 500)),
    Anchor("c=50 inter-token latency (steps mixing prefill)", NIM, "ms", 59.7,
           lambda: _mixed_step_ms(_nim70(), 50, 5000, 500)),
    Anchor("c>=100 total throughput", NIM, "out tok/s", 920,
           lambda: _nim70().saturated_throughput(5000, 500, 100)),
    Anchor("Qwen3-8B BF16, 1xH100, c=4 time per output token", GPUSTACK, "ms", 7.38,
           lambda: _model(_QWEN3_8B, "H100").decode_step_time([1000] * 4) * 1000),
    Anchor("prefill 8,192 tokens, H200", MEASURED, "ms", 228.8,
           lambda: _model(_L8, "H200").prefill_time(8192) * 1000),
    Anchor("prefill 2,048 tokens, H200", MEASURED, "ms", 53.2,
           lambda: _model(_L8, "H200").prefill_time(2048) * 1000),
    Anchor("decode step, batch 1, context 1,024, H200", MEASURED, "ms", 4.92,
           lambda: _model(_L8, "H200").decode_step_time([1024]) * 1000, calibrated=False,
           note="no scheduler or sampling in the measurement; the model adds vLLM's step overhead"),
    Anchor("decode step, batch 256, context 1,024, H200", MEASURED, "ms", 15.76,
           lambda: _model(_L8, "H200").decode_step_time([1024] * 256) * 1000, calibrated=False,
           note="as above; SDPA over padded caches, not paged attention"),
    Anchor("Qwen3-32B BF16, ShareGPT, 1,000 prompts at once, H100", GPUSTACK, "out tok/s", 1132,
           lambda: _model(MODELS["Qwen/Qwen3-32B"], "H100").saturated_throughput(300, 250, 256),
           calibrated=False,
           note="GPU count not stated; on one H100 BF16 weights leave ~2 GB for KV cache"),
    Anchor("Qwen3-32B FP8, same run", GPUSTACK, "out tok/s", 1926,
           lambda: _model(MODELS["Qwen/Qwen3-32B-FP8"], "H100").saturated_throughput(300, 250, 256),
           calibrated=False, note="GPU count and lengths not stated"),
)  # fmt: skip


def compare() -> list[tuple[Anchor, float]]:
    """Every anchor with the model's prediction for it."""
    return [(anchor, anchor.predict()) for anchor in ANCHORS]


def main() -> None:
    print("| anchor | source | published | model | model/published | calibrated |")
    print("|---|---|---|---|---|---|")
    for anchor, predicted in compare():
        flag = "yes" if anchor.calibrated else f"no: {anchor.note}"
        print(
            f"| {anchor.name} | {anchor.source} | {anchor.published:g} {anchor.unit} | "
            f"{predicted:.1f} | {predicted / anchor.published:.2f} | {flag} |"
        )


if __name__ == "__main__":
    main()
