"""Measure the GPU figures tiergate's roofline performance model is calibrated with.

Runs on a machine with an NVIDIA GPU and PyTorch (not in CI, not needed by the tests). It
times, with CUDA events:

1. HBM bandwidth: a 4 GiB device-to-device copy (bytes read + written).
2. bf16 (and, where supported, fp8) matrix products: the square 8192³ peak and the shapes of
   Llama-3.1-8B's layers at token counts from 1 to 8192, so the efficiency of small (decode,
   memory-bound) and large (prefill, compute-bound) batches is seen.
3. A Llama-3.1-8B-shaped decoder with random bf16 weights (32 layers, GQA 32/8, head dim 128,
   MLP 14336, vocabulary 128256) in plain PyTorch: decode step time for batch x context
   combinations (captured in CUDA graphs, as serving engines do) and prefill time for one
   sequence of 512 to 8192 tokens (SDPA, causal).

The decoder is not vLLM: no paged attention, no fused kernels. Its times bound what an engine
achieves from below and show how step time grows with batch and context. Output: one JSON
document on stdout and, when $OUT is set, in $OUT/gpu-calibration.json.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

HIDDEN, LAYERS, HEADS, KV_HEADS, HEAD_DIM, MLP, VOCAB = 4096, 32, 32, 8, 128, 14336, 128256
RESULTS: dict[str, Any] = {}


def save() -> None:
    text = json.dumps(RESULTS, indent=1)
    out = os.environ.get("OUT")
    if out:
        with open(os.path.join(out, "gpu-calibration.json"), "w") as handle:
            handle.write(text)


def timed(fn: Callable[[], object], warmup: int = 3, iters: int = 10) -> float:
    """Median seconds of ``fn`` over ``iters`` runs, timed with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    times.sort()
    return times[len(times) // 2]


def section(name: str, body: Callable[[], Any]) -> None:
    started = time.time()
    try:
        RESULTS[name] = body()
    except Exception as exc:  # noqa: BLE001 - record and go on: one failing section must not lose the rest
        RESULTS[name] = {"error": f"{type(exc).__name__}: {exc}"}
    RESULTS.setdefault("section_seconds", {})[name] = round(time.time() - started, 1)
    save()
    print(f"[{name}] done in {time.time() - started:.1f}s", file=sys.stderr, flush=True)
    torch.cuda.empty_cache()


def device_info() -> dict[str, Any]:
    props = torch.cuda.get_device_properties(0)
    return {
        "name": props.name,
        "multiprocessors": props.multi_processor_count,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }


def bandwidth() -> dict[str, float]:
    src = torch.empty(2 * 2**30, dtype=torch.bfloat16, device="cuda")  # 4 GiB
    dst = torch.empty_like(src)
    seconds = timed(lambda: dst.copy_(src))
    return {
        "copy_bytes": 2 * src.numel() * 2,
        "seconds": seconds,
        "tb_per_s": 2 * src.numel() * 2 / seconds / 1e12,
    }


def gemm_bf16() -> dict[str, Any]:
    result: dict[str, Any] = {}
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    seconds = timed(lambda: a @ b)
    result["square_8192_tflops"] = 2 * 8192**3 / seconds / 1e12
    shapes = {"qkv": (HIDDEN, (HEADS + 2 * KV_HEADS) * HEAD_DIM), "o": (HIDDEN, HIDDEN),
              "gate_up": (HIDDEN, 2 * MLP), "down": (MLP, HIDDEN)}  # fmt: skip
    rows = []
    for label, (k, n) in shapes.items():
        weight = torch.randn(k, n, dtype=torch.bfloat16, device="cuda")
        for m in (1, 8, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192):
            x = torch.randn(m, k, dtype=torch.bfloat16, device="cuda")
            seconds = timed(lambda x=x, weight=weight: x @ weight)
            rows.append({"shape": label, "m": m, "k": k, "n": n, "seconds": seconds,
                         "tflops": 2 * m * k * n / seconds / 1e12,
                         "weight_tb_per_s": k * n * 2 / seconds / 1e12})  # fmt: skip
    result["llama8b_layers"] = rows
    return result


def gemm_fp8() -> dict[str, Any]:
    m = k = n = 8192
    a = torch.randn(m, k, device="cuda").to(torch.float8_e4m3fn)
    b = torch.randn(n, k, device="cuda").to(torch.float8_e4m3fn).t()
    one = torch.tensor(1.0, device="cuda")
    seconds = timed(
        lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    )
    rows = []
    for rows_m in (1, 64, 256, 1024, 4096):
        x = torch.randn(rows_m, HIDDEN, device="cuda").to(torch.float8_e4m3fn)
        w = torch.randn(2 * MLP, HIDDEN, device="cuda").to(torch.float8_e4m3fn).t()
        s = timed(
            lambda x=x, w=w: torch._scaled_mm(
                x, w, scale_a=one, scale_b=one, out_dtype=torch.bfloat16
            )
        )
        rows.append({"m": rows_m, "k": HIDDEN, "n": 2 * MLP, "seconds": s,
                     "tflops": 2 * rows_m * HIDDEN * 2 * MLP / s / 1e12})  # fmt: skip
    return {"square_8192_tflops": 2 * m * k * n / seconds / 1e12, "gate_up": rows}


class Decoder:
    """A Llama-3.1-8B-shaped decoder with random weights (enough to time, nothing to say)."""

    def __init__(self) -> None:
        def w(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, dtype=torch.bfloat16, device="cuda") * 0.02

        self.layers = [
            {"qkv": w(HIDDEN, (HEADS + 2 * KV_HEADS) * HEAD_DIM), "o": w(HIDDEN, HIDDEN),
             "gate_up": w(HIDDEN, 2 * MLP), "down": w(MLP, HIDDEN),
             "n1": torch.ones(HIDDEN, dtype=torch.bfloat16, device="cuda"),
             "n2": torch.ones(HIDDEN, dtype=torch.bfloat16, device="cuda")}
            for _ in range(LAYERS)
        ]  # fmt: skip
        self.head = w(HIDDEN, VOCAB)

    def forward(
        self, x: torch.Tensor, caches: list[tuple[torch.Tensor, torch.Tensor]] | None
    ) -> torch.Tensor:
        # x: (batch, tokens, hidden). With caches: attend over the cache (decode); else causal.
        batch, tokens, _ = x.shape
        for index, layer in enumerate(self.layers):
            h = F.rms_norm(x, (HIDDEN,), layer["n1"])
            q, k, v = (h @ layer["qkv"]).split(
                [HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM], -1
            )
            q = q.view(batch, tokens, HEADS, HEAD_DIM).transpose(1, 2)
            k = k.view(batch, tokens, KV_HEADS, HEAD_DIM).transpose(1, 2)
            v = v.view(batch, tokens, KV_HEADS, HEAD_DIM).transpose(1, 2)
            if caches is None:
                attn = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            else:
                k_cache, v_cache = caches[index]
                attn = F.scaled_dot_product_attention(q, k_cache, v_cache, enable_gqa=True)
            x = x + attn.transpose(1, 2).reshape(batch, tokens, HIDDEN) @ layer["o"]
            h = F.rms_norm(x, (HIDDEN,), layer["n2"])
            gate, up = (h @ layer["gate_up"]).chunk(2, -1)
            x = x + (F.silu(gate) * up) @ layer["down"]
        return x[:, -1] @ self.head


def decode(model: Decoder) -> list[dict[str, Any]]:
    rows = []
    for batch, context in (
        (1, 1024),
        (8, 1024),
        (32, 1024),
        (64, 1024),
        (64, 4096),
        (128, 1024),
        (128, 2048),
        (256, 1024),
    ):
        caches = [
            (torch.randn(batch, KV_HEADS, context, HEAD_DIM, dtype=torch.bfloat16, device="cuda"),
             torch.randn(batch, KV_HEADS, context, HEAD_DIM, dtype=torch.bfloat16, device="cuda"))
            for _ in range(LAYERS)
        ]  # fmt: skip
        x = torch.randn(batch, 1, HIDDEN, dtype=torch.bfloat16, device="cuda")
        graphed = "eager"
        step: Callable[[], object] = lambda x=x, caches=caches: model.forward(x, caches)  # noqa: E731
        try:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):
                    model.forward(x, caches)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                model.forward(x, caches)
            step, graphed = graph.replay, "cuda_graph"
        except RuntimeError as exc:
            graphed = f"eager ({exc})"[:120]
        seconds = timed(step, warmup=3, iters=20)
        kv_bytes = LAYERS * 2 * batch * KV_HEADS * context * HEAD_DIM * 2
        rows.append({"batch": batch, "context": context, "seconds": seconds, "mode": graphed,
                     "kv_bytes": kv_bytes, "tokens_per_s": batch / seconds})  # fmt: skip
        del caches
        torch.cuda.empty_cache()
    return rows


def prefill(model: Decoder) -> list[dict[str, Any]]:
    rows = []
    for tokens in (512, 2048, 8192):
        x = torch.randn(1, tokens, HIDDEN, dtype=torch.bfloat16, device="cuda")
        seconds = timed(lambda x=x: model.forward(x, None), warmup=2, iters=5)
        rows.append({"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds})
    return rows


def main() -> None:
    torch.backends.cuda.matmul.allow_tf32 = True
    RESULTS["device"] = device_info()
    section("bandwidth", bandwidth)
    section("gemm_bf16", gemm_bf16)
    section("gemm_fp8", gemm_fp8)
    with torch.inference_mode():
        model = Decoder()
        section("decode_llama8b_shape", lambda: decode(model))
        section("prefill_llama8b_shape", lambda: prefill(model))
    print(json.dumps(RESULTS, indent=1))


if __name__ == "__main__":
    main()
