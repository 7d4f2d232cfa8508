"""The OpenAI-compatible API, through the official client and raw HTTP."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest

from tests.emulator.conftest import MODEL, Emulate
from tests.polling import eventually

HELLO = [{"role": "user", "content": "hello there, emulator"}]


async def test_chat_completion_through_the_openai_client(emulate: Emulate) -> None:
    running = await emulate()
    reply = await running.client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=12)  # type: ignore[arg-type]
    assert reply.object == "chat.completion"
    assert reply.model == MODEL
    assert reply.choices[0].finish_reason == "length"
    assert reply.choices[0].message.role == "assistant"
    assert len(reply.choices[0].message.content.split()) == 12  # type: ignore[union-attr]
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 12
    # 21 characters of text (6 tokens) plus the chat template's 4.
    assert reply.usage.prompt_tokens == 10
    assert reply.usage.total_tokens == 22


async def test_streaming_chat_through_the_openai_client(emulate: Emulate) -> None:
    running = await emulate()
    stream = await running.client.chat.completions.create(
        model=MODEL,
        messages=HELLO,  # type: ignore[arg-type]
        max_tokens=20,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [
        c.choices[0].delta.content for c in chunks[1:] if c.choices and c.choices[0].delta.content
    ]
    assert len(content) == 20  # one chunk per token
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == ["length"]
    assert not chunks[-1].choices
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 20


async def test_text_completions_streaming_and_not(emulate: Emulate) -> None:
    running = await emulate()
    reply = await running.client.completions.create(model=MODEL, prompt="a" * 40, max_tokens=5)
    assert reply.object == "text_completion"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == 10
    assert len(reply.choices[0].text.split()) == 5
    stream = await running.client.completions.create(
        model=MODEL, prompt=[1, 2, 3], max_tokens=7, stream=True
    )
    texts = [chunk.choices[0].text async for chunk in stream if chunk.choices]
    assert len([t for t in texts if t]) == 7


async def test_raw_stream_ends_with_done(emulate: Emulate) -> None:
    running = await emulate()
    body = {"model": MODEL, "messages": HELLO, "max_tokens": 3, "stream": True}
    async with running.http.post(running.origin + "/v1/chat/completions", json=body) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = [
            line.decode().strip() async for line in response.content if line.startswith(b"data:")
        ]
    assert events[-1] == "data: [DONE]"
    payloads = [json.loads(e[5:]) for e in events[:-1]]
    assert [p["choices"][0]["finish_reason"] for p in payloads] == [
        None,
        None,
        None,
        None,
        "length",
    ]


async def test_token_count_headers_set_prompt_and_output(emulate: Emulate) -> None:
    running = await emulate()
    headers = {"x-emulator-prompt-tokens": "1000", "x-emulator-output-tokens": "3"}
    status, payload = await running.chat(max_tokens=50, headers=headers)
    assert status == 200
    assert payload["usage"]["prompt_tokens"] == 1000
    assert payload["usage"]["completion_tokens"] == 3
    assert payload["choices"][0]["finish_reason"] == "stop"


async def test_token_counts_in_the_body_for_trace_replay(emulate: Emulate) -> None:
    running = await emulate()
    reply = await running.client.chat.completions.create(
        model=MODEL,
        messages=HELLO,  # type: ignore[arg-type]
        max_tokens=50,
        extra_body={"prompt_tokens": 2000, "output_tokens": 7},
    )
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == 2000
    assert reply.usage.completion_tokens == 7
    assert reply.choices[0].finish_reason == "stop"


async def test_sampled_output_length_is_at_most_max_tokens(emulate: Emulate) -> None:
    running = await emulate(sample_output_length=True)
    lengths = []
    for _ in range(10):
        status, payload = await running.chat(max_tokens=40)
        assert status == 200
        lengths.append(payload["usage"]["completion_tokens"])
    assert all(1 <= n <= 40 for n in lengths)
    assert len(set(lengths)) > 1
    status, payload = await running.chat(max_tokens=40, ignore_eos=True)
    assert payload["usage"]["completion_tokens"] == 40


async def test_models_lists_the_served_model(emulate: Emulate) -> None:
    running = await emulate(served_model_name="llama")
    models = await running.client.models.list()
    assert [m.id for m in models.data] == ["llama"]
    status, _ = await running.chat(model="llama")
    assert status == 200


async def test_unknown_model_is_a_404_and_bad_bodies_a_400(emulate: Emulate) -> None:
    running = await emulate()
    with pytest.raises(openai.NotFoundError):
        await running.client.chat.completions.create(model="nope", messages=HELLO)  # type: ignore[arg-type]
    status, payload = await running.post("/v1/chat/completions", {"model": MODEL})
    assert status == 400
    assert "messages" in payload["error"]["message"]
    status, payload = await running.post("/v1/chat/completions", data=b"{not json")
    assert status == 400
    status, _ = await running.chat(headers={"x-emulator-prompt-tokens": "many"})
    assert status == 400


async def test_request_longer_than_the_context_is_a_400(emulate: Emulate) -> None:
    running = await emulate(max_model_len=1000)
    status, payload = await running.chat(
        max_tokens=900, headers={"x-emulator-prompt-tokens": "200"}
    )
    assert status == 400
    assert "maximum context length is 1000 tokens" in payload["error"]["message"]


async def test_client_that_goes_away_frees_its_sequence(emulate: Emulate) -> None:
    running = await emulate(speed=1.0)  # slow enough that the request is still running
    stream = await running.client.chat.completions.create(
        model=MODEL,
        messages=HELLO,  # type: ignore[arg-type]
        max_tokens=5000,
        stream=True,
    )
    async for _ in stream:
        break
    engine = running.cluster.replicas[0].engine
    assert engine.scheduler.running
    await stream.close()
    await eventually(lambda: not engine.scheduler.has_work(), what="the aborted sequence freed")
    assert engine.scheduler.kv_usage == 0.0
    assert await running.metric("vllm:request_success_total", finished_reason="abort") == 1


async def test_concurrent_requests_share_batches(emulate: Emulate) -> None:
    running = await emulate()
    replies = await asyncio.gather(*(running.chat(max_tokens=30) for _ in range(20)))
    assert all(status == 200 for status, _ in replies)
    assert await running.metric("vllm:request_success_total", finished_reason="length") == 20
    assert await running.metric("vllm:generation_tokens_total") == 600
    # Fewer steps than tokens: sequences were batched together.
    assert await running.metric("vllm:iteration_tokens_total_count") < 600
