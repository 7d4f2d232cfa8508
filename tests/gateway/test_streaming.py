"""Streaming (SSE): relay, fallback before the first chunk, errors after it, cancellation, usage."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest
from aiohttp import web

from tests.gateway.helpers import (
    CHAT,
    HELLO,
    Gateway,
    StartGateway,
    StartUpstreams,
    eventually,
    fleet_yaml,
    metric,
    read_sse,
    refused_url,
    tier,
)
from tests.gateway.tiny import StartTiny, chunk_event, fixed_reply, hold
from tests.gateway.upstream import FakeUpstream


def content_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


async def collect(stream: Any, into: list[Any]) -> None:
    """Append every chunk of ``stream`` to ``into`` (kept when iterating raises)."""
    async for chunk in stream:
        into.append(chunk)


def expected_content(name: str, chunks: int = 5) -> str:
    return "".join(f"from {name} #{i}; " for i in range(chunks))


async def stream_chat(
    gw: Gateway, model: str = "a", **kwargs: Any
) -> tuple[dict[str, str], list[Any]]:
    """Stream a chat completion with the openai client: (response headers, every chunk)."""
    async with gw.client.chat.completions.with_streaming_response.create(
        model=model, messages=HELLO, stream=True, **kwargs
    ) as response:
        headers = {key.lower(): value for key, value in response.headers.items()}
        stream = await response.parse()
        return headers, [chunk async for chunk in stream]


@pytest.fixture
async def two_tiers(
    upstreams: StartUpstreams, gateway: StartGateway
) -> tuple[Gateway, FakeUpstream, FakeUpstream]:
    a, b = await upstreams("a", "b")
    gw = await gateway(
        fleet_yaml(
            [tier("a", a), tier("b", b)],
            fallback=[{"statusCode": [429, 500, 502, 503, 504]}, {"latencyMs": "> 200"}],
        )
    )
    return gw, a, b


async def test_stream_relays_every_chunk_in_order(
    two_tiers: tuple[Gateway, FakeUpstream, FakeUpstream],
) -> None:
    gw, a, b = two_tiers

    headers, chunks = await stream_chat(gw)

    assert content_of(chunks) == expected_content("a")
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert headers["x-tiergate-tier"] == "a"
    assert headers["x-tiergate-attempts"] == "1"
    assert headers["x-request-id"]
    assert headers["content-type"].startswith("text/event-stream")
    assert a.requests[0].body["model"] == "org/model-a"
    assert a.requests[0].body["stream"] is True
    assert b.requests == []


async def test_stream_is_sse_ending_with_done(
    two_tiers: tuple[Gateway, FakeUpstream, FakeUpstream],
) -> None:
    gw, _, _ = two_tiers

    status, _, events = await read_sse(gw, CHAT, {"model": "a", "messages": HELLO, "stream": True})

    assert status == 200
    assert events[-1] == "[DONE]"
    parsed = [json.loads(e) for e in events[:-1]]
    assert all(p["object"] == "chat.completion.chunk" for p in parsed)


async def test_chunks_reach_the_client_before_the_upstream_finishes(
    two_tiers: tuple[Gateway, FakeUpstream, FakeUpstream],
) -> None:
    gw, a, _ = two_tiers
    a.set(chunks=5, chunk_delay_s=0.1)

    async with gw.client.chat.completions.with_streaming_response.create(
        model="a", messages=HELLO, stream=True
    ) as response:
        stream = await response.parse()
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                # The first content chunk is here while the upstream is still generating.
                assert a.completed_streams == 0
                assert a.active_streams == 1
                break
        await stream.close()


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 503},
        {"status": 429},
        {"reset_before_first_byte": True},
        {"reset_after_chunks": 0},
        {"stall_s": 1.0},
    ],
    ids=[
        "status-503",
        "status-429",
        "reset-before-headers",
        "reset-after-headers",
        "slow-first-byte",
    ],
)
async def test_failure_before_first_chunk_falls_back_to_next_tier(
    two_tiers: tuple[Gateway, FakeUpstream, FakeUpstream], fault: dict[str, Any]
) -> None:
    gw, a, b = two_tiers
    a.set(**fault)

    headers, chunks = await stream_chat(gw)

    # The client sees the second tier's stream and nothing else.
    assert content_of(chunks) == expected_content("b")
    assert headers["x-tiergate-tier"] == "b"
    assert headers["x-tiergate-attempts"] == "2"
    assert len(a.requests) == 1
    assert len(b.requests) == 1


async def test_connection_refused_stream_falls_back(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    (b,) = await upstreams("b")
    gw = await gateway(fleet_yaml([tier("a", refused_url()), tier("b", b)]))

    headers, chunks = await stream_chat(gw)

    assert content_of(chunks) == expected_content("b")
    assert headers["x-tiergate-tier"] == "b"


async def test_upstream_failure_after_first_chunk_ends_stream_with_error(
    two_tiers: tuple[Gateway, FakeUpstream, FakeUpstream],
) -> None:
    gw, a, b = two_tiers
    a.reset_after_chunks = 3  # role chunk and two content chunks, then the connection drops

    received: list[Any] = []
    stream = await gw.client.chat.completions.create(model="a", messages=HELLO, stream=True)
    with pytest.raises(openai.APIError) as caught:
        await collect(stream, received)
    await stream.close()

    # An explicit error event from the gateway, not a dropped connection nor a clean end.
    assert not isinstance(caught.value, openai.APIConnectionError)
    assert content_of(received) == expected_content("a", 2)
    assert b.requests == []


async def test_error_event_after_first_chunk_is_openai_shaped(
    two_tiers: tuple[Gateway, FakeUpstream, FakeUpstream],
) -> None:
    gw, a, _ = two_tiers
    a.reset_after_chunks = 2

    status, _, events = await read_sse(gw, CHAT, {"model": "a", "messages": HELLO, "stream": True})

    assert status == 200
    assert "<connection dropped>" not in events
    assert "[DONE]" not in events
    last = json.loads(events[-1])
    assert isinstance(last["error"], dict)
    assert last["error"]["message"]
    assert json.loads(events[1])["choices"][0]["delta"]["content"] == "from a #0; "


async def test_upstream_timeout_mid_stream_ends_stream_with_error(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    a, b = await upstreams("a", "b")
    a.set(chunks=50, chunk_delay_s=0.1)
    gw = await gateway(fleet_yaml([tier("a", a, timeouts={"totalMs": 400}), tier("b", b)]))

    received: list[Any] = []
    stream = await gw.client.chat.completions.create(model="a", messages=HELLO, stream=True)
    with pytest.raises(openai.APIError) as caught:
        await collect(stream, received)
    await stream.close()

    assert not isinstance(caught.value, openai.APIConnectionError)
    assert content_of(received).startswith("from a #0; ")
    assert b.requests == []


async def test_client_disconnect_cancels_the_upstream_stream(
    two_tiers: tuple[Gateway, FakeUpstream, FakeUpstream],
) -> None:
    gw, a, _ = two_tiers
    a.set(chunks=200, chunk_delay_s=0.05)  # 10 s if left to run

    stream = await gw.client.chat.completions.create(model="a", messages=HELLO, stream=True)
    seen = 0
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            seen += 1
            if seen == 2:
                break
    await stream.close()

    await eventually(
        lambda: a.cancelled_streams == 1 and a.active_streams == 0,
        timeout_s=2.0,
        what="upstream stream cancelled after client disconnect",
    )
    assert a.completed_streams == 0


@pytest.mark.parametrize(
    "options", [{}, {"stream_options": {"include_usage": False}}], ids=["no-options", "false"]
)
async def test_usage_is_requested_upstream_and_stripped_when_client_did_not_ask(
    two_tiers: tuple[Gateway, FakeUpstream, FakeUpstream], options: dict[str, Any]
) -> None:
    gw, a, _ = two_tiers

    _, chunks = await stream_chat(gw, **options)

    assert a.requests[0].body["stream_options"]["include_usage"] is True
    assert all(chunk.choices for chunk in chunks)
    assert content_of(chunks) == expected_content("a")


async def test_usage_chunk_reaches_client_that_asked(
    two_tiers: tuple[Gateway, FakeUpstream, FakeUpstream],
) -> None:
    gw, a, _ = two_tiers
    a.chunks = 4

    _, chunks = await stream_chat(gw, stream_options={"include_usage": True})

    assert a.requests[0].body["stream_options"]["include_usage"] is True
    usage_chunks = [c for c in chunks if not c.choices]
    assert len(usage_chunks) == 1
    assert chunks[-1] is usage_chunks[0]
    usage = usage_chunks[0].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (7, 4)


async def test_usage_stripped_after_fallback_too(
    two_tiers: tuple[Gateway, FakeUpstream, FakeUpstream],
) -> None:
    gw, a, b = two_tiers
    a.status = 503

    _, chunks = await stream_chat(gw)

    assert b.requests[0].body["stream_options"]["include_usage"] is True
    assert all(chunk.choices for chunk in chunks)
    assert content_of(chunks) == expected_content("b")


async def test_completions_stream_falls_back_before_first_chunk(
    two_tiers: tuple[Gateway, FakeUpstream, FakeUpstream],
) -> None:
    gw, a, b = two_tiers
    a.status = 502

    stream = await gw.client.completions.create(model="a", prompt="Say hi", stream=True)
    chunks = [chunk async for chunk in stream]

    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == expected_content("b")
    assert all(chunk.choices for chunk in chunks)
    assert b.requests[0].path == "/v1/completions"
    assert b.requests[0].body["stream_options"]["include_usage"] is True


# -- latencyMs on streams, idle upstreams, and 200s that are no stream -------------------------


async def test_latency_limit_does_not_cut_the_last_tier_of_a_stream(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    a, b = await upstreams("a", "b")
    a.stall_s = b.stall_s = 0.3  # every tier's first event later than the limit
    gw = await gateway(fleet_yaml([tier("a", a), tier("b", b)], fallback=[{"latencyMs": "> 100"}]))

    headers, chunks = await stream_chat(gw)

    assert content_of(chunks) == expected_content("b")
    assert headers["x-tiergate-attempts"] == "2"


async def silent_after(request: web.Request, events: int) -> web.StreamResponse:
    """An upstream that streams ``events`` content events, then says nothing more."""
    await request.read()
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    if events:
        await response.write(chunk_event("", role=True))
    for index in range(events):
        await response.write(chunk_event(f"part {index}; "))
    await hold(request)
    return response


async def test_a_silent_committed_stream_ends_with_an_error_after_idle_ms(
    upstreams: StartUpstreams, gateway: StartGateway, tiny_upstream: StartTiny
) -> None:
    async def three_then_silence(request: web.Request) -> web.StreamResponse:
        return await silent_after(request, 3)

    silent = await tiny_upstream(three_then_silence)
    (b,) = await upstreams("b")
    # totalMs far away: only the idle limit can end this stream within the test's bound.
    timeouts = {"idleMs": 300, "totalMs": 600_000}
    gw = await gateway(fleet_yaml([tier("a", silent, timeouts=timeouts), tier("b", b)]))

    async with asyncio.timeout(5):
        status, _, events = await read_sse(
            gw, CHAT, {"model": "a", "messages": HELLO, "stream": True}
        )

    assert status == 200
    contents = [json.loads(e)["choices"][0]["delta"].get("content") for e in events[:4]]
    assert contents == ["", "part 0; ", "part 1; ", "part 2; "]
    error = json.loads(events[-1])["error"]
    assert error["code"] == "stream_interrupted"
    assert "no data for 0.3 s" in error["message"]
    assert b.requests == []  # committed: nothing moves to another tier
    text = await gw.metrics()
    assert metric(text, "tiergate_attempts_total", tier="a", outcome="stream_idle_timeout") == 1


async def test_a_stream_silent_before_its_first_event_falls_back_after_idle_ms(
    upstreams: StartUpstreams, gateway: StartGateway, tiny_upstream: StartTiny
) -> None:
    async def headers_then_silence(request: web.Request) -> web.StreamResponse:
        return await silent_after(request, 0)

    silent = await tiny_upstream(headers_then_silence)
    (b,) = await upstreams("b")
    gw = await gateway(fleet_yaml([tier("a", silent, timeouts={"idleMs": 300}), tier("b", b)]))

    async with asyncio.timeout(5):
        headers, chunks = await stream_chat(gw)

    assert content_of(chunks) == expected_content("b")
    assert headers["x-tiergate-attempts"] == "2"


async def test_idle_ms_does_not_cut_a_stream_that_keeps_sending(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    (a,) = await upstreams("a")
    a.set(chunks=6, chunk_delay_s=0.1)  # 0.6 s in all, never 0.3 s silent
    gw = await gateway(fleet_yaml([tier("a", a, timeouts={"idleMs": 300})]))

    _, chunks = await stream_chat(gw)

    assert content_of(chunks) == expected_content("a", 6)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"id": "chatcmpl-x", "object": "chat.completion", "choices": []}', "application/json"),
        (b"<html>upstream proxy says hi</html>", "text/html"),
    ],
    ids=["json", "html"],
)
async def test_a_200_that_is_no_event_stream_falls_back_before_the_commit_point(
    upstreams: StartUpstreams,
    gateway: StartGateway,
    tiny_upstream: StartTiny,
    body: bytes,
    content_type: str,
) -> None:
    bad = await tiny_upstream(fixed_reply(body, content_type))
    (b,) = await upstreams("b")
    gw = await gateway(fleet_yaml([tier("a", bad), tier("b", b)]))

    headers, chunks = await stream_chat(gw)

    assert content_of(chunks) == expected_content("b")
    assert headers["x-tiergate-tier"] == "b"
