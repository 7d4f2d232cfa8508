"""The roofline model: its shape (what grows with what) and its calibration anchors."""

from __future__ import annotations

import pytest

from tiergate.perf import PerfModel, gpu_named, model_named
from tiergate.perf.anchors import ANCHORS, compare


@pytest.fixture
def llama8b() -> PerfModel:
    return PerfModel(model_named("meta-llama/Llama-3.1-8B-Instruct"), gpu_named("H100"))


@pytest.mark.parametrize("anchor", [a for a in ANCHORS if a.calibrated], ids=lambda a: a.name)
def test_calibrated_anchors_within_25_percent(anchor: object) -> None:
    (predicted,) = [p for a, p in compare() if a is anchor]
    assert predicted == pytest.approx(anchor.published, rel=0.25)  # type: ignore[attr-defined]


def test_decode_is_memory_bound_at_small_batch_and_grows_with_batch(llama8b: PerfModel) -> None:
    one = llama8b.decode_step_time([1024])
    eight = llama8b.decode_step_time([1024] * 8)
    big = llama8b.decode_step_time([1024] * 256)
    # Eight sequences cost little more than one (the weights are read once per step)...
    assert eight < one * 1.2
    # ...but a large batch reads much more KV cache.
    assert big > one * 2


def test_longer_contexts_make_decode_steps_slower(llama8b: PerfModel) -> None:
    assert llama8b.decode_step_time([8192] * 64) > llama8b.decode_step_time([512] * 64)


def test_prefill_is_compute_bound_and_superlinear_in_prompt_length(llama8b: PerfModel) -> None:
    short, long = llama8b.prefill_time(1024), llama8b.prefill_time(8192)
    assert long > 8 * short * 0.9  # linear part, plus attention's quadratic part
    assert long / 8192 > short / 1024


def test_empty_step_costs_nothing(llama8b: PerfModel) -> None:
    assert llama8b.step_time([], []) == 0.0


def test_tensor_parallelism_adds_communication_but_speeds_up_big_models() -> None:
    model = model_named("meta-llama/Llama-3.1-70B-Instruct")
    one = PerfModel(model, gpu_named("H200"))
    two = PerfModel(model, gpu_named("H200"), 2)
    assert two.decode_step_time([1024]) < one.decode_step_time([1024])
    assert two.kv_capacity_tokens > 2 * one.kv_capacity_tokens


def test_kv_capacity_follows_memory_left_after_weights() -> None:
    qwen = model_named("Qwen/Qwen3-32B")
    h100, h200 = gpu_named("H100"), gpu_named("H200")
    assert PerfModel(qwen, h200).kv_capacity_tokens > 10 * PerfModel(qwen, h100).kv_capacity_tokens
    assert not PerfModel(model_named("zai-org/GLM-5-FP8"), h200).fits
    assert PerfModel(model_named("zai-org/GLM-5-FP8"), h200, 8).fits


def test_moe_reads_only_the_experts_a_small_batch_touches() -> None:
    deepseek = PerfModel(model_named("deepseek-ai/DeepSeek-V3.2"), gpu_named("H200"), 8)
    small, large = deepseek.decode_step_time([2048]), deepseek.decode_step_time([2048] * 256)
    full_read_s = deepseek.weight_bytes / (8 * 4.8e12)
    assert small < full_read_s  # fewer bytes than the whole model
    assert large > small


def test_load_time_follows_the_seeds_storage_table() -> None:
    glm = PerfModel(model_named("zai-org/GLM-5-FP8"), gpu_named("H200"), 8)
    nvme, s3, efs = glm.load_time("nvme"), glm.load_time("s3"), glm.load_time("efs")
    assert nvme < s3 < efs
    # 744 GB at ~1 GB/s: the seed's "S3 pre-caching 5-10 min" for a 744 GB model, plus start-up.
    assert 5 * 60 < s3 < 20 * 60
    with pytest.raises(ValueError, match="unknown storage 'tape'"):
        glm.load_time("tape")


def test_saturated_throughput_is_bounded_by_max_num_seqs(llama8b: PerfModel) -> None:
    few = llama8b.saturated_throughput(1000, 1000, max_num_seqs=8)
    many = llama8b.saturated_throughput(1000, 1000, max_num_seqs=256)
    assert many > 4 * few
