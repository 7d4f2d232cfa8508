"""The gateway's Prometheus metrics, as an operator's dashboard would read them."""

from __future__ import annotations

import asyncio

from tests.gateway.helpers import (
    API_KEY,
    HELLO,
    StartGateway,
    StartUpstreams,
    eventually,
    fleet_yaml,
    metric,
    metric_samples,
    refused_url,
    tier,
)


async def test_fallback_is_counted_per_tier_and_reason(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    a, b = await upstreams("a", "b")
    a.status = 503
    gw = await gateway(fleet_yaml([tier("a", a), tier("b", b)]))

    assert await gw.served_by("a") == "b"
    text = await gw.metrics()

    assert metric(text, "tiergate_requests_total", tier="b", status="200") == 1
    assert metric(text, "tiergate_attempts_total", tier="a") == 1
    assert metric(text, "tiergate_attempts_total", tier="b") == 1
    assert (
        metric(text, "tiergate_fallbacks_total", from_tier="a", to_tier="b", reason="status") == 1
    )
    assert metric(text, "tiergate_request_duration_seconds_count") == 1
    buckets = metric_samples(text, "tiergate_upstream_duration_seconds_bucket")
    assert sum(v for labels, v in buckets if labels.get("le") == "2.0") == 2
    assert metric(text, "tiergate_tokens_total", direction="input", tier="b") == 7
    assert metric(text, "tiergate_tokens_total", direction="output", tier="b") == 5
    assert metric(text, "tiergate_tokens_total", tier="a") == 0


async def test_connect_error_fallback_reason(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    (b,) = await upstreams("b")
    gw = await gateway(fleet_yaml([tier("a", refused_url()), tier("b", b)]))

    assert await gw.served_by("a") == "b"

    text = await gw.metrics()
    assert (
        metric(text, "tiergate_fallbacks_total", from_tier="a", to_tier="b", reason="connect_error")
        == 1
    )


async def test_failed_request_is_counted_with_its_status(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    a, b = await upstreams("a", "b")
    a.status = b.status = 500
    gw = await gateway(fleet_yaml([tier("a", a), tier("b", b)]))

    status, _, _ = await gw.chat("a")

    assert status == 502
    assert metric(await gw.metrics(), "tiergate_requests_total", status="502") == 1


async def test_streams_record_time_to_first_token_and_tokens(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    (a,) = await upstreams("a")
    a.chunks = 6
    gw = await gateway(fleet_yaml([tier("a", a)]))

    stream = await gw.client.chat.completions.create(model="a", messages=HELLO, stream=True)
    _ = [chunk async for chunk in stream]

    text = await gw.metrics()
    assert metric(text, "tiergate_time_to_first_token_seconds_count") == 1
    assert metric(text, "tiergate_tokens_total", direction="input", tier="a") == 7
    assert metric(text, "tiergate_tokens_total", direction="output", tier="a") == 6
    assert metric(text, "tiergate_requests_total", tier="a", status="200") == 1


async def test_in_flight_gauge_follows_requests(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    (a,) = await upstreams("a")
    a.stall_s = 0.5
    gw = await gateway(fleet_yaml([tier("a", a)]))

    async def in_flight_is(wanted: float) -> bool:
        return metric(await gw.metrics(), "tiergate_requests_in_flight") == wanted

    slow = asyncio.create_task(gw.chat("a"))
    await eventually(lambda: in_flight_is(1), what="one request in flight")
    status, _, _ = await slow
    assert status == 200
    await eventually(lambda: in_flight_is(0), what="no request in flight")


async def test_tier_gauges_exist_for_every_tier(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    a, b = await upstreams("a", "b")
    gw = await gateway(
        fleet_yaml(
            [tier("a", a), tier("b", b)],
            fallback=[{"statusCode": [503]}, {"errorRate": "> 0.5"}],
        )
    )

    text = await gw.metrics()

    for name in ("a", "b"):
        assert metric_samples(text, "tiergate_tier_up"), text
        assert metric(text, "tiergate_tier_up", tier=name) == 1
        assert [
            v
            for labels, v in metric_samples(text, "tiergate_tier_breaker_state")
            if labels.get("tier") == name
        ] == [0]


async def test_unknown_model_does_not_create_a_label_value(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    (a,) = await upstreams("a")
    gw = await gateway(fleet_yaml([tier("a", a)]))

    for i in range(3):
        status, _, _ = await gw.chat(f"zz-arbitrary-model-{i}")
        assert status == 404

    text = await gw.metrics()
    assert "zz-arbitrary-model" not in text
    assert metric(text, "tiergate_requests_total", model="unknown") == 3


async def test_client_api_key_never_appears_in_metrics(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    (a,) = await upstreams("a")
    gw = await gateway(fleet_yaml([tier("a", a)]))

    await gw.client.chat.completions.create(model="a", messages=HELLO)
    await gw.post(
        "/v1/chat/completions",
        {"model": "nope-model", "messages": HELLO},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    status, text = await gw.get("/metrics")

    assert status == 200
    assert API_KEY not in text
    assert API_KEY[:12] not in text
