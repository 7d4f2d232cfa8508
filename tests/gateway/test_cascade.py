"""The cascade: which tier serves, what it is sent, and when a request moves on."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest
from aiohttp import web

from tests.gateway.helpers import (
    CHAT,
    HELLO,
    StartGateway,
    StartUpstreams,
    attempts_of,
    eventually,
    fleet_yaml,
    refused_url,
    tier,
)
from tests.gateway.tiny import StartTiny, fixed_reply

TIMEOUT_REASONS = {"timeout", "first_byte_timeout"}


async def test_first_tier_serves_with_its_model_id_and_untouched_extra_fields(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    a, b = await upstreams("a", "b")
    gw = await gateway(fleet_yaml([tier("a", a), tier("b", b)]))

    raw = await gw.client.chat.completions.with_raw_response.create(
        model="a",
        messages=HELLO,
        temperature=0.25,
        extra_body={"top_k": 3, "vendor_option": {"x": [1, 2]}},
    )
    completion = raw.parse()

    assert completion.choices[0].message.content == "from a"
    assert raw.headers["x-tiergate-tier"] == "a"
    assert raw.headers["x-tiergate-attempts"] == "1"
    assert len(a.requests) == 1
    assert b.requests == []
    path, _, body = a.requests[0]
    assert path == CHAT
    assert body["model"] == "org/model-a"
    assert body["messages"] == HELLO
    assert body["temperature"] == 0.25
    assert body["top_k"] == 3
    assert body["vendor_option"] == {"x": [1, 2]}


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
async def test_default_fallback_statuses_move_to_next_tier(
    upstreams: StartUpstreams, gateway: StartGateway, status: int
) -> None:
    a, b = await upstreams("a", "b")
    a.status = status
    gw = await gateway(fleet_yaml([tier("a", a), tier("b", b)]))

    raw = await gw.client.chat.completions.with_raw_response.create(
        model="a", messages=HELLO, extra_body={"top_k": 3}
    )
    completion = raw.parse()

    assert completion.choices[0].message.content == "from b"
    assert raw.headers["x-tiergate-tier"] == "b"
    assert raw.headers["x-tiergate-attempts"] == "2"
    assert len(a.requests) == 1
    assert b.requests[0].body["model"] == "org/model-b"
    assert b.requests[0].body["top_k"] == 3


@pytest.mark.parametrize("status", [400, 401, 404, 413, 422])
async def test_client_errors_from_upstream_are_returned_as_they_are(
    upstreams: StartUpstreams, gateway: StartGateway, status: int
) -> None:
    a, b = await upstreams("a", "b")
    a.status = status
    gw = await gateway(fleet_yaml([tier("a", a), tier("b", b)]))

    got, headers, payload = await gw.chat("a")

    assert got == status
    assert payload == a.error_body(status)
    assert headers["x-tiergate-attempts"] == "1"
    assert b.requests == []


async def test_configured_status_list_replaces_the_defaults(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    a, b = await upstreams("a", "b")
    gw = await gateway(fleet_yaml([tier("a", a), tier("b", b)], fallback=[{"statusCode": [503]}]))

    a.status = 500  # not in the list: returned as is
    status, _, payload = await gw.chat("a")
    assert status == 500
    assert payload == a.error_body(500)
    assert b.requests == []

    a.status = 503  # in the list: next tier
    status, headers, payload = await gw.chat("a")
    assert status == 200
    assert payload["choices"][0]["message"]["content"] == "from b"
    assert headers["x-tiergate-tier"] == "b"


async def test_connection_refused_moves_to_next_tier(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    (b,) = await upstreams("b")
    gw = await gateway(fleet_yaml([tier("a", refused_url()), tier("b", b)]))

    raw = await gw.client.chat.completions.with_raw_response.create(model="a", messages=HELLO)
    completion = raw.parse()

    assert completion.choices[0].message.content == "from b"
    assert raw.headers["x-tiergate-tier"] == "b"
    assert raw.headers["x-tiergate-attempts"] == "2"


async def test_connection_reset_before_first_byte_moves_to_next_tier(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    a, b = await upstreams("a", "b")
    a.reset_before_first_byte = True
    gw = await gateway(fleet_yaml([tier("a", a), tier("b", b)]))

    completion = await gw.client.chat.completions.create(model="a", messages=HELLO)

    assert completion.choices[0].message.content == "from b"
    assert len(a.requests) == 1


async def test_upstream_slower_than_latency_limit_is_abandoned_for_next_tier(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    a, b = await upstreams("a", "b")
    a.stall_s = 1.0
    gw = await gateway(
        fleet_yaml(
            [tier("a", a), tier("b", b)],
            fallback=[{"statusCode": [503]}, {"latencyMs": "> 200"}],
        )
    )

    raw = await gw.client.chat.completions.with_raw_response.create(model="a", messages=HELLO)
    completion = raw.parse()

    assert completion.choices[0].message.content == "from b"
    assert raw.headers["x-tiergate-tier"] == "b"
    assert len(a.requests) == 1


async def test_total_timeout_moves_to_next_tier(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    a, b = await upstreams("a", "b")
    a.stall_s = 1.5
    gw = await gateway(fleet_yaml([tier("a", a, timeouts={"totalMs": 300}), tier("b", b)]))

    completion = await gw.client.chat.completions.create(model="a", messages=HELLO)

    assert completion.choices[0].message.content == "from b"


async def test_first_byte_timeout_moves_to_next_tier(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    a, b = await upstreams("a", "b")
    a.stall_s = 1.5
    gw = await gateway(fleet_yaml([tier("a", a, timeouts={"firstByteMs": 200}), tier("b", b)]))

    raw = await gw.client.chat.completions.with_raw_response.create(model="a", messages=HELLO)

    assert raw.parse().choices[0].message.content == "from b"
    assert raw.headers["x-tiergate-attempts"] == "2"


async def test_every_tier_failing_gives_502_listing_the_attempts(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    a, b = await upstreams("a", "b")
    a.status, b.status = 500, 503
    gw = await gateway(fleet_yaml([tier("a", a), tier("b", b)]))

    status, headers, payload = await gw.chat("a")

    assert status == 502
    assert payload["error"]["code"] == "all_tiers_failed"
    assert attempts_of(payload) == [("a", "status", 500), ("b", "status", 503)]
    for attempt in payload["error"]["attempts"]:
        assert isinstance(attempt["latency_ms"], int | float)
        assert attempt["latency_ms"] >= 0
    assert "x-tiergate-tier" not in headers
    assert headers["x-tiergate-attempts"] == "2"

    with pytest.raises(openai.APIStatusError) as caught:
        await gw.client.chat.completions.create(model="a", messages=HELLO)
    assert caught.value.status_code == 502
    assert caught.value.code == "all_tiers_failed"


async def test_refused_then_failing_tier_gives_502_with_both_reasons(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    (b,) = await upstreams("b")
    b.status = 500
    gw = await gateway(fleet_yaml([tier("a", refused_url()), tier("b", b)]))

    status, _, payload = await gw.chat("a")

    assert status == 502
    assert payload["error"]["code"] == "all_tiers_failed"
    assert attempts_of(payload) == [("a", "connect_error", None), ("b", "status", 500)]


async def test_every_attempt_timing_out_gives_504(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    a, b = await upstreams("a", "b")
    a.stall_s = b.stall_s = 1.5
    limits = {"timeouts": {"totalMs": 250}}
    gw = await gateway(fleet_yaml([tier("a", a, **limits), tier("b", b, **limits)]))

    status, headers, payload = await gw.chat("a")

    assert status == 504
    assert payload["error"]["code"] == "upstream_timeout"
    assert [t for t, _, _ in attempts_of(payload)] == ["a", "b"]
    assert {reason for _, reason, _ in attempts_of(payload)} <= TIMEOUT_REASONS
    assert "x-tiergate-tier" not in headers


async def test_request_enters_the_cascade_at_the_named_tier(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    a, b, c = await upstreams("a", "b", "c")
    gw = await gateway(fleet_yaml([tier("a", a), tier("b", b), tier("c", c)]))

    assert await gw.served_by("b") == "b"
    b.status = 503
    assert await gw.served_by("b") == "c"
    assert a.requests == []

    # The last tier has nowhere to go: earlier tiers are never tried.
    c.status = 503
    status, _, payload = await gw.chat("c")
    assert status == 502
    assert attempts_of(payload) == [("c", "status", 503)]
    assert a.requests == []


async def test_upstream_model_id_enters_at_first_tier_serving_it(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    x, a, b = await upstreams("x", "a", "b")
    gw = await gateway(
        fleet_yaml(
            [tier("b", b, model="shared/m"), tier("x", x), tier("a", a, model="shared/m")],
            cascade=["x", "a", "b"],
        )
    )

    status, headers, _ = await gw.chat("shared/m")
    assert status == 200
    assert headers["x-tiergate-tier"] == "a"
    assert a.requests[0].body["model"] == "shared/m"

    a.status = 503
    assert await gw.served_by("shared/m") == "b"
    assert x.requests == []


async def test_unknown_model_is_404_naming_the_valid_ones(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    a, b = await upstreams("a", "b")
    gw = await gateway(fleet_yaml([tier("edge-small", a), tier("cloud-large", b)]))

    with pytest.raises(openai.NotFoundError) as caught:
        await gw.client.chat.completions.create(model="no-such-model", messages=HELLO)

    assert caught.value.code == "model_not_found"
    message = str(caught.value.message)
    assert "edge-small" in message
    assert "cloud-large" in message
    assert a.requests == []
    assert b.requests == []


async def test_models_lists_public_names_and_upstream_ids(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    a, b = await upstreams("a", "b")
    gw = await gateway(fleet_yaml([tier("a", a), tier("b", b)]))

    listed = [m.id async for m in gw.client.models.list()]

    assert {"a", "b", "org/model-a", "org/model-b"} <= set(listed)
    status, text = await gw.get("/v1/models")
    assert status == 200
    assert json.loads(text)["object"] == "list"


async def test_request_id_is_echoed_or_generated(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    (a,) = await upstreams("a")
    gw = await gateway(fleet_yaml([tier("a", a)]))

    _, headers, _ = await gw.post(
        CHAT, {"model": "a", "messages": HELLO}, headers={"x-request-id": "req-abc-123"}
    )
    assert headers["x-request-id"] == "req-abc-123"

    _, first, _ = await gw.chat("a")
    _, second, _ = await gw.chat("a")
    assert first["x-request-id"]
    assert second["x-request-id"]
    assert first["x-request-id"] != second["x-request-id"]


async def test_completions_fall_back(upstreams: StartUpstreams, gateway: StartGateway) -> None:
    a, b = await upstreams("a", "b")
    a.status = 503
    gw = await gateway(fleet_yaml([tier("a", a), tier("b", b)]))

    raw = await gw.client.completions.with_raw_response.create(model="a", prompt="Say hi")
    completion = raw.parse()

    assert completion.choices[0].text == "from b"
    assert raw.headers["x-tiergate-tier"] == "b"
    path, _, body = b.requests[0]
    assert path == "/v1/completions"
    assert body["model"] == "org/model-b"
    assert body["prompt"] == "Say hi"


async def test_embeddings_fall_back(upstreams: StartUpstreams, gateway: StartGateway) -> None:
    a, b = await upstreams("a", "b")
    a.status = 502
    gw = await gateway(fleet_yaml([tier("a", a), tier("b", b)]))

    raw = await gw.client.embeddings.with_raw_response.create(model="a", input=["one", "two"])
    result = raw.parse()

    assert [len(item.embedding) for item in result.data] == [3, 3]
    assert raw.headers["x-tiergate-tier"] == "b"
    path, _, body = b.requests[0]
    assert path == "/v1/embeddings"
    assert body["model"] == "org/model-b"
    assert body["input"] == ["one", "two"]


# -- latencyMs: time to first byte, never cutting the last tier ------------------------------


async def test_latency_limit_does_not_cut_the_last_tier(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    a, b = await upstreams("a", "b")
    a.stall_s = b.stall_s = 0.3  # every tier slower than the limit
    gw = await gateway(fleet_yaml([tier("a", a), tier("b", b)], fallback=[{"latencyMs": "> 100"}]))

    raw = await gw.client.chat.completions.with_raw_response.create(model="a", messages=HELLO)

    assert raw.parse().choices[0].message.content == "from b"
    assert raw.headers["x-tiergate-attempts"] == "2"  # a was left at the limit, b waited for


async def test_latency_limit_does_not_cut_a_single_tier(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    (a,) = await upstreams("a")
    a.stall_s = 0.3
    gw = await gateway(fleet_yaml([tier("a", a)], fallback=[{"latencyMs": "> 100"}]))

    status, _, payload = await gw.chat("a")

    assert status == 200
    assert payload["choices"][0]["message"]["content"] == "from a"


async def test_latency_limit_is_time_to_the_reply_headers_not_its_whole_body(
    upstreams: StartUpstreams, gateway: StartGateway, tiny_upstream: StartTiny
) -> None:
    """Headers at once, the body 300 ms later: the reply's first byte came within 100 ms."""

    async def slow_body(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        answer = {
            "id": "chatcmpl-slow",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "slow body"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }
        text = json.dumps(answer).encode()
        await response.write(text[:10])
        await asyncio.sleep(0.3)
        await response.write(text[10:])
        await response.write_eof()
        return response

    slow = await tiny_upstream(slow_body)
    (b,) = await upstreams("b")
    gw = await gateway(
        fleet_yaml([tier("a", slow), tier("b", b)], fallback=[{"latencyMs": "> 100"}])
    )

    status, headers, payload = await gw.chat("a")

    assert status == 200
    assert headers["x-tiergate-tier"] == "a"
    assert payload["choices"][0]["message"]["content"] == "slow body"
    assert b.requests == []


# -- a 200 that is not an answer, and listed statuses of any class, fall back ------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"<html>upstream proxy says hi</html>", "text/html"),
        (b'{"choices": [', "application/json"),  # cut short
        (b'["not", "an", "object"]', "application/json"),
    ],
    ids=["html", "truncated-json", "json-array"],
)
async def test_a_200_whose_body_is_not_a_json_object_falls_back(
    upstreams: StartUpstreams,
    gateway: StartGateway,
    tiny_upstream: StartTiny,
    body: bytes,
    content_type: str,
) -> None:
    bad = await tiny_upstream(fixed_reply(body, content_type))
    (b,) = await upstreams("b")
    gw = await gateway(fleet_yaml([tier("a", bad), tier("b", b)]))

    raw = await gw.client.chat.completions.with_raw_response.create(model="a", messages=HELLO)

    assert raw.parse().choices[0].message.content == "from b"
    assert raw.headers["x-tiergate-tier"] == "b"


async def test_every_tier_answering_garbage_is_a_502_naming_it(
    gateway: StartGateway, tiny_upstream: StartTiny
) -> None:
    async def garbage(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b"not json", content_type="text/plain")

    bad = await tiny_upstream(garbage)
    gw = await gateway(fleet_yaml([tier("a", bad)]))

    status, _, payload = await gw.chat("a")

    assert status == 502
    assert attempts_of(payload) == [("a", "invalid_response", 200)]


@pytest.mark.parametrize("code", [401, 403, 404, 422])
async def test_listed_client_error_statuses_fall_back(
    upstreams: StartUpstreams, gateway: StartGateway, code: int
) -> None:
    a, b = await upstreams("a", "b")
    a.status = code
    gw = await gateway(
        fleet_yaml([tier("a", a), tier("b", b)], fallback=[{"statusCode": [code, 503]}])
    )

    raw = await gw.client.chat.completions.with_raw_response.create(model="a", messages=HELLO)

    assert raw.parse().choices[0].message.content == "from b"
    assert raw.headers["x-tiergate-attempts"] == "2"


async def test_unlisted_client_error_statuses_are_returned(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    a, b = await upstreams("a", "b")
    a.status = 404
    gw = await gateway(fleet_yaml([tier("a", a), tier("b", b)], fallback=[{"statusCode": [503]}]))

    status, headers, _ = await gw.chat("a")

    assert status == 404
    assert headers["x-tiergate-tier"] == "a"
    assert b.requests == []


async def test_latency_limit_does_not_cut_a_tier_whose_later_tiers_are_all_down(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    a, b = await upstreams("a", "b")
    b.health_status = 503
    health = {"intervalMs": 50, "timeoutMs": 100, "unhealthyThreshold": 1}
    gw = await gateway(
        fleet_yaml(
            [tier("a", a), tier("b", b, healthCheck=health)], fallback=[{"latencyMs": "> 100"}]
        )
    )

    async def b_down() -> bool:
        _, text = await gw.get("/ready")
        return json.loads(text)["tiers"]["b"] is False

    await eventually(b_down, what="tier b marked down")
    a.stall_s = 0.3  # slower than the limit, with nothing healthy to move on to

    status, headers, payload = await gw.chat("a")

    assert status == 200
    assert payload["choices"][0]["message"]["content"] == "from a"
    assert headers["x-tiergate-attempts"] == "1"
