"""``/metrics`` exposes stock vLLM V1's names, types, labels and buckets (vllm-metrics.md)."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.emulator.conftest import MODEL, Emulate
from tests.emulator.helpers import histogram_mean, metric

TTFT = [
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1,
    2.5,
    5,
    7.5,
    10,
    20,
    40,
    80,
    160,
    640,
    2560,
]
ITL = [
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1,
    2.5,
    5,
    7.5,
    10,
    20,
    40,
    80,
]
REQUEST = [
    0.3,
    0.5,
    0.8,
    1,
    1.5,
    2,
    2.5,
    5,
    10,
    15,
    20,
    30,
    40,
    50,
    60,
    120,
    240,
    480,
    960,
    1920,
    7680,
]
ITERATION = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]

# Family name as the parser reports it (counters without _total) -> (type, buckets or None).
EXPECTED: dict[str, tuple[str, list[float] | None]] = {
    "vllm:num_requests_running": ("gauge", None),
    "vllm:num_requests_waiting": ("gauge", None),
    "vllm:kv_cache_usage_perc": ("gauge", None),
    "vllm:prompt_tokens": ("counter", None),
    "vllm:generation_tokens": ("counter", None),
    "vllm:request_success": ("counter", None),
    "vllm:num_preemptions": ("counter", None),
    "vllm:time_to_first_token_seconds": ("histogram", TTFT),
    "vllm:inter_token_latency_seconds": ("histogram", ITL),
    "vllm:e2e_request_latency_seconds": ("histogram", REQUEST),
    "vllm:request_queue_time_seconds": ("histogram", REQUEST),
    "vllm:request_inference_time_seconds": ("histogram", REQUEST),
    "vllm:request_prefill_time_seconds": ("histogram", REQUEST),
    "vllm:request_decode_time_seconds": ("histogram", REQUEST),
    "vllm:request_prompt_tokens": ("histogram", None),
    "vllm:request_generation_tokens": ("histogram", None),
    "vllm:iteration_tokens_total": ("histogram", ITERATION),
}


def buckets(family_samples: list[tuple[str, dict[str, str], float]], name: str) -> list[float]:
    return [
        float(labels["le"])
        for sample, labels, _ in family_samples
        if sample == f"{name}_bucket" and labels["le"] != "+Inf"
    ]


async def test_metrics_have_vllm_names_types_labels_and_buckets(emulate: Emulate) -> None:
    running = await emulate(max_model_len=4096)
    assert (await running.chat(max_tokens=4))[0] == 200
    families = {f.name: f for f in text_string_to_metric_families(await running.metrics())}
    for name, (kind, expected_buckets) in EXPECTED.items():
        assert name in families, name
        family = families[name]
        assert family.type == kind, name
        samples = [(s.name, dict(s.labels), s.value) for s in family.samples]
        for _, labels, _ in samples:
            assert labels["model_name"] == MODEL
            assert labels["engine"] == "0"
        if expected_buckets is not None:
            assert buckets(samples, name) == pytest.approx(expected_buckets), name
    prompt_buckets = buckets(
        [(s.name, dict(s.labels), s.value) for s in families["vllm:request_prompt_tokens"].samples],
        "vllm:request_prompt_tokens",
    )
    assert prompt_buckets == [
        1,
        2,
        5,
        10,
        20,
        50,
        100,
        200,
        500,
        1000,
        2000,
    ]  # 1-2-5 up to max_model_len
    text = await running.metrics()
    # As exposed: counters with _total; the iteration histogram keeps its own _total.
    for sample in (
        "vllm:generation_tokens_total",
        "vllm:num_preemptions_total",
        "vllm:iteration_tokens_total_bucket",
    ):
        assert f"\n{sample}{{" in text
    reasons = {
        s.labels["finished_reason"]
        for s in families["vllm:request_success"].samples
        if s.name.endswith("_total")
    }
    assert reasons == {"stop", "length", "abort"}


async def test_metrics_count_what_was_served(emulate: Emulate) -> None:
    running = await emulate()
    headers = {"x-emulator-prompt-tokens": "100"}
    results = await asyncio.gather(
        *(running.chat(max_tokens=10, headers=headers) for _ in range(5))
    )
    assert all(status == 200 for status, _ in results)
    text = await running.metrics()
    assert metric(text, "vllm:prompt_tokens_total") == 500
    assert metric(text, "vllm:generation_tokens_total") == 50
    assert metric(text, "vllm:request_success_total", finished_reason="length") == 5
    assert metric(text, "vllm:time_to_first_token_seconds_count") == 5
    assert metric(text, "vllm:inter_token_latency_seconds_count") == 45  # 9 per request
    assert metric(text, "vllm:e2e_request_latency_seconds_count") == 5
    assert metric(text, "vllm:request_generation_tokens_sum") == 50
    assert metric(text, "vllm:num_requests_running") == 0
    assert metric(text, "vllm:num_requests_waiting") == 0
    assert metric(text, "vllm:kv_cache_usage_perc") == 0
    # Model seconds: an 8B decode step on an H100 takes milliseconds, whatever the speed.
    assert 0.001 < histogram_mean(text, "vllm:inter_token_latency_seconds") < 0.1
