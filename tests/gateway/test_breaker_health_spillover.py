"""Tiers skipped without an attempt: error-rate breaker, active health checks, spillover."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.gateway.helpers import (
    Gateway,
    StartGateway,
    StartUpstreams,
    eventually,
    fleet_yaml,
    metric,
    tier,
)
from tests.gateway.upstream import FakeUpstream

BREAKER = {"windowMs": 10_000, "minRequests": 4, "cooldownMs": 300}
ERROR_RATE = [{"statusCode": [429, 500, 502, 503, 504]}, {"errorRate": "> 0.5"}]
HEALTH = {
    "endpoint": "/health",
    "intervalMs": 50,
    "timeoutMs": 100,
    "unhealthyThreshold": 2,
    "healthyThreshold": 2,
}


def served_is(gw: Gateway, model: str, wanted: str) -> Any:
    async def check() -> bool:
        return await gw.served_by(model) == wanted

    return check


# -- errorRate breaker --------------------------------------------------------------------------


async def open_breaker(
    upstreams: StartUpstreams, gateway: StartGateway
) -> tuple[Gateway, FakeUpstream, FakeUpstream]:
    """Two tiers; ``a`` fails four times in a row, which opens its breaker."""
    a, b = await upstreams("a", "b")
    gw = await gateway(
        fleet_yaml([tier("a", a), tier("b", b)], fallback=ERROR_RATE, breaker=BREAKER)
    )
    a.status = 500
    for _ in range(4):
        status, headers, _ = await gw.chat("a")
        assert status == 200
        assert headers["x-tiergate-tier"] == "b"
        assert headers["x-tiergate-attempts"] == "2"
    assert len(a.requests) == 4
    return gw, a, b


async def test_breaker_opens_and_requests_skip_the_tier(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    gw, a, _ = await open_breaker(upstreams, gateway)

    for _ in range(3):
        status, headers, payload = await gw.chat("a")
        assert status == 200
        assert payload["choices"][0]["message"]["content"] == "from b"
        assert headers["x-tiergate-attempts"] == "1"
    assert len(a.requests) == 4
    assert metric(await gw.metrics(), "tiergate_tier_breaker_state", tier="a") == 1


async def test_breaker_below_min_requests_stays_closed(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    a, b = await upstreams("a", "b")
    gw = await gateway(
        fleet_yaml([tier("a", a), tier("b", b)], fallback=ERROR_RATE, breaker=BREAKER)
    )
    a.status = 500
    for _ in range(3):
        assert await gw.served_by("a") == "b"

    a.status = None
    assert await gw.served_by("a") == "a"
    assert len(a.requests) == 4


async def test_successful_probe_after_cooldown_closes_the_breaker(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    gw, a, _ = await open_breaker(upstreams, gateway)
    a.heal()

    await eventually(served_is(gw, "a", "a"), timeout_s=3.0, interval_s=0.05, what="probe")

    for _ in range(3):
        assert await gw.served_by("a") == "a"
    assert metric(await gw.metrics(), "tiergate_tier_breaker_state", tier="a") == 0


async def test_failed_probe_reopens_the_breaker(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    gw, a, _ = await open_breaker(upstreams, gateway)

    async def probed() -> bool:
        assert await gw.served_by("a") == "b"
        return len(a.requests) == 5

    await eventually(probed, timeout_s=3.0, interval_s=0.05, what="probe after cooldown")

    for _ in range(3):
        status, headers, _ = await gw.chat("a")
        assert status == 200
        assert headers["x-tiergate-attempts"] == "1"
    assert len(a.requests) == 5
    assert metric(await gw.metrics(), "tiergate_tier_breaker_state", tier="a") == 1


async def test_only_one_probe_goes_through_at_a_time(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    gw, a, _ = await open_breaker(upstreams, gateway)
    a.heal()
    a.stall_s = 0.5  # the probe stays in flight while the others arrive
    await asyncio.sleep(0.45)  # past the 300 ms cooldown

    served = await asyncio.gather(*(gw.served_by("a") for _ in range(3)))

    assert sorted(served) == ["a", "b", "b"]
    assert len(a.requests) == 5


# -- active health checks -------------------------------------------------------------------------


async def test_unhealthy_tier_is_skipped_until_healthy_again(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    a, b = await upstreams("a", "b")
    gw = await gateway(fleet_yaml([tier("a", a, healthCheck=HEALTH), tier("b", b)]))
    await eventually(lambda: a.health_probes >= 1, what="first health probe")
    assert await gw.served_by("a") == "a"

    a.health_status = 503
    await eventually(served_is(gw, "a", "b"), interval_s=0.05, what="tier a marked down")
    before = len(a.requests)
    status, headers, _ = await gw.chat("a")
    assert status == 200
    assert headers["x-tiergate-tier"] == "b"
    assert headers["x-tiergate-attempts"] == "1"
    assert len(a.requests) == before
    assert metric(await gw.metrics(), "tiergate_tier_up", tier="a") == 0

    a.health_status = 200
    await eventually(served_is(gw, "a", "a"), interval_s=0.05, what="tier a back up")
    assert metric(await gw.metrics(), "tiergate_tier_up", tier="a") == 1


async def test_health_probe_timeout_counts_as_failure(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    a, b = await upstreams("a", "b")
    gw = await gateway(fleet_yaml([tier("a", a, healthCheck=HEALTH), tier("b", b)]))

    a.health_delay_s = 0.5  # timeoutMs is 100
    await eventually(served_is(gw, "a", "b"), interval_s=0.05, what="slow health marks down")


async def test_tier_without_health_check_is_never_skipped_for_health(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    a, b = await upstreams("a", "b")
    a.health_status = b.health_status = 503
    gw = await gateway(fleet_yaml([tier("a", a), tier("b", b, healthCheck=HEALTH)]))

    # b's checks have run well past its threshold; a has none and keeps serving.
    await eventually(lambda: b.health_probes >= 4, what="b probed")
    await eventually(
        lambda: _tier_down(gw, "b"), interval_s=0.05, what="b reported down in /metrics"
    )
    for _ in range(3):
        assert await gw.served_by("a") == "a"


async def _tier_down(gw: Gateway, name: str) -> bool:
    return metric(await gw.metrics(), "tiergate_tier_up", tier=name) == 0


async def test_ready_reflects_whether_any_tier_is_usable(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    a, b = await upstreams("a", "b")
    gw = await gateway(
        fleet_yaml([tier("a", a, healthCheck=HEALTH), tier("b", b, healthCheck=HEALTH)])
    )

    async def ready_is(wanted: int) -> bool:
        status, _ = await gw.get("/ready")
        return status == wanted

    await eventually(lambda: ready_is(200), what="ready")

    a.health_status = b.health_status = 503
    await eventually(lambda: ready_is(503), interval_s=0.05, what="not ready")
    assert (await gw.get("/health"))[0] == 200

    before = len(a.requests) + len(b.requests)
    status, headers, payload = await gw.chat("a")
    assert status == 503
    assert payload["error"]["code"] == "no_tier_available"
    assert payload["error"]["attempts"] == []
    assert "x-tiergate-tier" not in headers
    assert headers["x-tiergate-attempts"] == "0"
    assert len(a.requests) + len(b.requests) == before

    b.health_status = 200
    await eventually(lambda: ready_is(200), interval_s=0.05, what="ready again")
    assert await gw.served_by("a") == "b"


# -- spillover ------------------------------------------------------------------------------------


def spill(**limits: Any) -> dict[str, Any]:
    return {"scrapeIntervalMs": 50, "staleAfterMs": 5000, **limits}


async def test_saturated_tier_spills_to_next_until_queue_drains(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    a, b = await upstreams("a", "b")
    gw = await gateway(fleet_yaml([tier("a", a, spillover=spill(maxWaiting=5)), tier("b", b)]))
    assert await gw.served_by("a") == "a"

    a.waiting = 10
    await eventually(served_is(gw, "a", "b"), interval_s=0.05, what="spill to b")
    assert a.metrics_scrapes > 0
    before = len(a.requests)
    _, headers, _ = await gw.chat("a")
    assert headers["x-tiergate-attempts"] == "1"
    assert len(a.requests) == before

    a.waiting = 0
    await eventually(served_is(gw, "a", "a"), interval_s=0.05, what="back to a")


async def test_kv_cache_usage_triggers_spillover(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    a, b = await upstreams("a", "b")
    gw = await gateway(
        fleet_yaml([tier("a", a, spillover=spill(maxKvCacheUsage=0.9)), tier("b", b)])
    )

    a.kv_usage = 0.95
    await eventually(served_is(gw, "a", "b"), interval_s=0.05, what="spill on KV usage")
    a.kv_usage = 0.2
    await eventually(served_is(gw, "a", "a"), interval_s=0.05, what="back to a")


async def test_spillover_uses_the_mean_over_the_engines(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    a, b, e1, e2 = await upstreams("a", "b", "e1", "e2")
    urls = [f"{e1.origin}/metrics", f"{e2.origin}/metrics"]
    gw = await gateway(
        fleet_yaml([tier("a", a, spillover=spill(maxWaiting=5, metricsUrls=urls)), tier("b", b)])
    )

    e1.waiting, e2.waiting = 8, 0  # mean 4: below the limit
    start = (e1.metrics_scrapes, e2.metrics_scrapes)
    await eventually(
        lambda: e1.metrics_scrapes >= start[0] + 2 and e2.metrics_scrapes >= start[1] + 2,
        what="engines scraped",
    )
    assert await gw.served_by("a") == "a"

    e2.waiting = 4  # mean 6
    await eventually(served_is(gw, "a", "b"), interval_s=0.05, what="spill on mean")


async def test_every_tier_saturated_still_served_by_the_first(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    a, b = await upstreams("a", "b")
    limits = spill(maxWaiting=5)
    gw = await gateway(fleet_yaml([tier("a", a, spillover=limits), tier("b", b, spillover=limits)]))

    a.waiting = 10
    await eventually(served_is(gw, "a", "b"), interval_s=0.05, what="spill to b")
    b.waiting = 10
    start = b.metrics_scrapes
    await eventually(lambda: b.metrics_scrapes >= start + 2, what="b scraped")

    status, headers, _ = await gw.chat("a")
    assert status == 200
    assert headers["x-tiergate-tier"] == "a"


async def test_stale_engine_metrics_are_ignored(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    a, b, engine = await upstreams("a", "b", "engine")
    limits = spill(maxWaiting=5, metricsUrls=[f"{engine.origin}/metrics"], staleAfterMs=300)
    gw = await gateway(fleet_yaml([tier("a", a, spillover=limits), tier("b", b)]))

    engine.waiting = 10
    await eventually(served_is(gw, "a", "b"), interval_s=0.05, what="spill to b")
    await engine.close()  # its metrics stop coming
    await eventually(served_is(gw, "a", "a"), interval_s=0.05, what="stale data ignored")


async def test_no_spillover_without_the_section(
    upstreams: StartUpstreams, gateway: StartGateway
) -> None:
    a, b = await upstreams("a", "b")
    a.waiting, a.kv_usage = 100, 1.0
    gw = await gateway(fleet_yaml([tier("a", a), tier("b", b)]))

    for _ in range(5):
        assert await gw.served_by("a") == "a"
        await asyncio.sleep(0.05)
