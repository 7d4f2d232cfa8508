"""The catalog: lookups, the reference's KV sizes and batch-1 bounds, prices."""

from __future__ import annotations

import pytest

from tiergate.perf import GPUS, INSTANCES, MODELS, PerfModel, gpu_named, instance_named, model_named


def test_lookups_are_case_insensitive_and_accept_aliases() -> None:
    assert gpu_named("h100").name == "H100"
    assert gpu_named("H200-SXM").name == "H200"
    assert model_named("qwen3-32b").name == "Qwen/Qwen3-32B"
    assert model_named("meta-llama/Llama-3.1-8B").name == "meta-llama/Llama-3.1-8B-Instruct"
    assert instance_named("P5.48XLARGE").gpus == 8


def test_unknown_names_suggest_the_closest() -> None:
    with pytest.raises(KeyError, match=r"unknown GPU 'H10' \(did you mean 'H100'\?\)"):
        gpu_named("H10")
    with pytest.raises(KeyError, match="unknown model 'qwen3-23b'"):
        model_named("qwen3-23b")


@pytest.mark.parametrize(
    ("model", "kib"),
    [
        ("meta-llama/Llama-3.1-8B-Instruct", 128),
        ("meta-llama/Llama-3.1-70B-Instruct", 320),
        ("Qwen/Qwen3-32B", 256),
    ],
)
def test_kv_bytes_per_token_match_the_reference(model: str, kib: int) -> None:
    assert PerfModel(model_named(model), gpu_named("H100")).kv_bytes_per_token == kib * 1024


def test_fp8_kv_cache_halves_the_bytes_per_token() -> None:
    model = PerfModel(model_named("Qwen/Qwen3-32B"), gpu_named("H100"), kv_bytes=1)
    assert model.kv_bytes_per_token == 128 * 1024


@pytest.mark.parametrize(
    ("model", "gpu", "ms"),
    [
        ("meta-llama/Llama-3.1-8B-Instruct", "H100", 4.8),
        ("meta-llama/Llama-3.1-8B-Instruct", "H200", 3.35),
        ("Qwen/Qwen3-32B", "H100", 19.6),
        ("Qwen/Qwen3-32B-FP8", "H200", 6.8),
    ],
)
def test_weights_over_bandwidth_match_the_reference_lower_bounds(
    model: str, gpu: str, ms: float
) -> None:
    spec, device = model_named(model), gpu_named(gpu)
    bound_ms = spec.weight_bytes / (device.bandwidth_tb_s * 1e12) * 1000
    assert bound_ms == pytest.approx(ms, rel=0.03)
    # The model never beats the bound: a batch-1 step is slower than streaming the weights once.
    assert PerfModel(spec, device).decode_step_time([128]) * 1000 > bound_ms


def test_every_instance_names_a_catalogued_gpu_and_prices_per_gpu() -> None:
    assert all(instance.gpu in GPUS for instance in INSTANCES.values())
    p5 = INSTANCES["p5.48xlarge"]
    assert p5.on_demand_usd_per_gpu_h == pytest.approx(6.88)
    assert p5.spot_usd_h is not None
    assert p5.spot_usd_h < p5.on_demand_usd_h  # type: ignore[operator]


def test_the_seed_models_are_catalogued() -> None:
    for name in (
        "Qwen/Qwen3-32B",
        "Qwen/Qwen3-32B-FP8",
        "meta-llama/Llama-3.1-8B-Instruct",
        "meta-llama/Llama-3.1-70B-Instruct",
        "deepseek-ai/DeepSeek-V3.2",
        "zai-org/GLM-5-FP8",
        "moonshotai/Kimi-K2.5",
    ):
        assert name in MODELS
    deepseek = MODELS["deepseek-ai/DeepSeek-V3.2"]
    assert (deepseek.total_params_b, deepseek.active_params_b) == (671, 37)
