"""Behaviour under load: queueing delays the first token, a full KV cache preempts, and a
saturated engine generates what the performance model predicts."""

from __future__ import annotations

import asyncio

import pytest

from tests.emulator.conftest import Emulate, Running
from tests.emulator.helpers import metric
from tiergate.emulator import SchedulerLimits
from tiergate.perf import PerfModel, gpu_named, model_named


async def burst(running: Running, count: int, max_tokens: int, prompt_tokens: int = 50) -> None:
    headers = {"x-emulator-prompt-tokens": str(prompt_tokens)}
    replies = await asyncio.gather(
        *(running.chat(max_tokens=max_tokens, headers=headers) for _ in range(count))
    )
    assert all(status == 200 for status, _ in replies)


async def test_time_to_first_token_rises_with_the_queue(emulate: Emulate) -> None:
    running = await emulate(limits=SchedulerLimits(max_num_seqs=2))
    means = []
    before_sum = before_count = 0.0
    for size in (1, 4, 12):
        await burst(running, size, max_tokens=20)
        text = await running.metrics()
        total = metric(text, "vllm:time_to_first_token_seconds_sum")
        count = metric(text, "vllm:time_to_first_token_seconds_count")
        means.append((total - before_sum) / (count - before_count))
        before_sum, before_count = total, count
    assert means[0] < means[1] < means[2]
    assert await running.metric("vllm:request_queue_time_seconds_sum") > 0


async def test_full_kv_cache_preempts_and_every_request_still_finishes(emulate: Emulate) -> None:
    # 2048 tokens of KV cache; 12 requests of 100 + 200 tokens need 3600 at the end.
    running = await emulate(kv_capacity_tokens=2048, speed=50.0)
    peak_usage = peak_waiting = 0.0

    async def watch() -> None:
        nonlocal peak_usage, peak_waiting
        while True:
            text = await running.metrics()
            peak_usage = max(peak_usage, metric(text, "vllm:kv_cache_usage_perc"))
            peak_waiting = max(peak_waiting, metric(text, "vllm:num_requests_waiting"))
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    try:
        await burst(running, 12, max_tokens=200, prompt_tokens=100)
    finally:
        watcher.cancel()
    text = await running.metrics()
    assert metric(text, "vllm:num_preemptions_total") > 0
    assert metric(text, "vllm:request_success_total", finished_reason="length") == 12
    assert metric(text, "vllm:generation_tokens_total") == 12 * 200
    assert peak_usage > 0.9
    assert peak_waiting > 0
    assert metric(text, "vllm:kv_cache_usage_perc") == 0


async def test_saturated_decode_throughput_matches_the_performance_model(emulate: Emulate) -> None:
    """64 sequences decoding together generate within 20% of what the perf model says a
    64-sequence decode batch does. Engine time is pinned to the model's (no catching up with
    the wall clock), so the figure does not depend on this machine's speed."""
    running = await emulate(speed=4.0, lag_tolerance_s=1e6)
    batch, prompt, output = 64, 100, 100
    await burst(running, batch, max_tokens=output, prompt_tokens=prompt)
    text = await running.metrics()
    decode_s = metric(text, "vllm:request_decode_time_seconds_sum") / batch
    measured = batch * (output - 1) / decode_s
    perf = PerfModel(model_named("meta-llama/Llama-3.1-8B-Instruct"), gpu_named("H100"))
    predicted = batch / perf.step_time([], [prompt + output // 2] * batch)
    assert measured == pytest.approx(predicted, rel=0.2)
