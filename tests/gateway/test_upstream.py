"""The fake upstream itself, so that gateway failures are not the fake's."""

from __future__ import annotations

import aiohttp
import openai
import pytest

from tests.gateway.helpers import HELLO, metric
from tests.gateway.upstream import FakeUpstream


async def test_fake_answers_like_an_openai_server() -> None:
    async with FakeUpstream("a") as up:
        client = openai.AsyncOpenAI(base_url=up.url, api_key="k", max_retries=0)
        try:
            chat = await client.chat.completions.create(model="m1", messages=HELLO)
            stream = await client.chat.completions.create(
                model="m1", messages=HELLO, stream=True, stream_options={"include_usage": True}
            )
            chunks = [chunk async for chunk in stream]
            text = await client.completions.create(model="m1", prompt="p")
            vectors = await client.embeddings.create(model="m1", input=["x", "y"])
        finally:
            await client.close()

    assert chat.choices[0].message.content == "from a"
    assert chat.model == "m1"
    assert chat.usage is not None
    assert (chat.usage.prompt_tokens, chat.usage.completion_tokens) == (7, 5)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith(
        "from a #0; "
    )
    assert chunks[-1].choices == []
    assert text.choices[0].text == "from a"
    assert len(vectors.data) == 2
    assert [r.path for r in up.requests] == [
        "/v1/chat/completions",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
    ]
    assert up.completed_streams == 1
    assert up.active_streams == 0


async def test_fake_faults_and_probes() -> None:
    async with FakeUpstream("b") as up, aiohttp.ClientSession() as http:
        up.set(status=503, waiting=3, kv_usage=0.5, health_status=500)
        async with http.post(up.url + "/chat/completions", json={"model": "m"}) as response:
            assert response.status == 503
            assert await response.json() == up.error_body(503)
        async with http.get(up.origin + "/health") as response:
            assert response.status == 500
        async with http.get(up.origin + "/metrics") as response:
            text = await response.text()
        assert metric(text, "vllm:num_requests_waiting") == 3
        assert metric(text, "vllm:kv_cache_usage_perc", engine="0") == 0.5

        up.heal()
        up.reset_before_first_byte = True
        with pytest.raises(aiohttp.ClientConnectionError):
            async with http.post(up.url + "/chat/completions", json={"model": "m"}) as response:
                await response.read()
    assert up.health_probes == 1
    assert up.metrics_scrapes == 1
    with pytest.raises(AttributeError):
        up.set(stal_s=1)
