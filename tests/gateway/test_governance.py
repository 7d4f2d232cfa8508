"""Virtual keys, budgets and the ledger through the gateway (SQLite store, official client)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
import yaml

from tests.gateway.helpers import (
    CHAT,
    HELLO,
    Gateway,
    StartGateway,
    StartUpstreams,
    eventually,
    fleet_yaml,
    metric,
    tier,
)
from tests.gateway.upstream import PROMPT_TOKENS
from tiergate.gateway.state import STATE
from tiergate.ledger.open import open_store
from tiergate.ledger.records import RequestRecord

MASTER = "master-key-for-tests-0123456789"
# $1 per 1k tokens, in and out: a token costs 1,000 micro-USD, so reservations are exact.
PRICE = {"per": "1k", "input": 1.0, "output": 1.0}


def governed(tiers: list[dict[str, Any]], store: Path, **governance: Any) -> str:
    section = {"masterKey": MASTER, "keyCacheMs": 0, "ledger": {"store": f"sqlite:///{store}"}}
    section.update(governance)
    return fleet_yaml(tiers) + yaml.safe_dump({"governance": section}, sort_keys=False)


async def admin(gw: Gateway, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {MASTER}"}
    async with gw.http.request(method, gw.url + path, json=body, headers=headers) as response:
        return response.status, await response.json()


async def create_key(gw: Gateway, **settings: Any) -> tuple[str, str]:
    status, body = await admin(gw, "POST", "/admin/keys", settings)
    assert status == 201, body
    return body["key"], body["key_id"]


def client_for(gw: Gateway, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0, timeout=10)


async def ledger(path: Path, count: int) -> list[RequestRecord]:
    """The ledger's records once ``count`` are there (the gateway writes in groups)."""
    found: list[RequestRecord] = []

    async def enough() -> bool:
        store = open_store(f"sqlite:///{path}")
        await store.open()
        try:
            found[:] = await store.requests(0, 4e9)
        finally:
            await store.close()
        return len(found) >= count

    await eventually(enough, what=f"{count} ledger records")
    return found


async def test_open_until_a_key_exists_then_keys_are_required(
    gateway: StartGateway,
    upstreams: StartUpstreams,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (a,) = await upstreams("a")
    gw = await gateway(governed([tier("a", a)], tmp_path / "ledger.db"))
    assert "no virtual keys exist yet" in caplog.text
    assert (await gw.chat("a"))[0] == 200  # open: no key needed yet
    key, key_id = await create_key(gw, team="ml", project="search", name="ci")
    assert key.startswith("sk-tg-")
    assert key_id.startswith("tk_")
    status, _, body = await gw.chat("a")  # no Authorization header at all
    assert (status, body["error"]["code"]) == (401, "missing_api_key")
    async with client_for(gw, "sk-tg-not-a-key") as stranger:
        with pytest.raises(openai.AuthenticationError) as wrong:
            await stranger.chat.completions.create(model="a", messages=HELLO)
    assert wrong.value.code == "invalid_api_key"
    client = client_for(gw, key)
    completion = await client.chat.completions.create(model="a", messages=HELLO)
    assert completion.choices[0].message.content
    await client.close()


async def test_revoked_keys_get_401(
    gateway: StartGateway, upstreams: StartUpstreams, tmp_path: Path
) -> None:
    (a,) = await upstreams("a")
    gw = await gateway(governed([tier("a", a)], tmp_path / "ledger.db"))
    key, key_id = await create_key(gw)
    client = client_for(gw, key)
    await client.chat.completions.create(model="a", messages=HELLO)
    status, body = await admin(gw, "DELETE", f"/admin/keys/{key_id}")
    assert (status, body["revoked"]) == (200, True)
    with pytest.raises(openai.AuthenticationError):
        await client.chat.completions.create(model="a", messages=HELLO)
    status, listed = await admin(gw, "GET", "/admin/keys")
    (shown,) = listed["data"]
    assert shown["key_id"] == key_id
    assert shown["revoked_at"] is not None
    assert "key_hash" not in shown
    assert key not in orjson.dumps(listed).decode()
    await client.close()


async def test_admin_api_needs_the_master_key(
    gateway: StartGateway, upstreams: StartUpstreams, tmp_path: Path
) -> None:
    (a,) = await upstreams("a")
    gw = await gateway(governed([tier("a", a)], tmp_path / "ledger.db"))
    for headers in ({}, {"Authorization": "Bearer wrong-master-key-0123456789"}):
        async with gw.http.get(gw.url + "/admin/keys", headers=headers) as response:
            assert response.status == 401
            assert (await response.json())["error"]["code"] == "invalid_master_key"
    status, body = await admin(gw, "POST", "/admin/keys", {"rpm": "many"})
    assert (status, body["error"]["param"]) == (400, "rpm")


async def test_keys_limited_to_models(
    gateway: StartGateway, upstreams: StartUpstreams, tmp_path: Path
) -> None:
    a, b = await upstreams("a", "b")
    gw = await gateway(governed([tier("a", a), tier("b", b)], tmp_path / "ledger.db"))
    key, _ = await create_key(gw, models=["b"])
    client = client_for(gw, key)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        await client.chat.completions.create(model="a", messages=HELLO)
    assert caught.value.code == "model_not_allowed"
    await client.chat.completions.create(model="b", messages=HELLO)
    await client.close()


async def test_every_request_reaches_the_ledger_with_its_cost(
    gateway: StartGateway, upstreams: StartUpstreams, tmp_path: Path
) -> None:
    a, b = await upstreams("a", "b")
    a.status = 503
    store = tmp_path / "ledger.db"
    tiers = [
        tier("a", a, pricing=PRICE),
        tier("b", b, pricing={"per": "1M", "input": 2.0, "output": 8.0}),
    ]
    gw = await gateway(governed(tiers, store))
    key, key_id = await create_key(gw, team="ml", project="search")
    client = client_for(gw, key)
    completion = await client.chat.completions.create(
        model="a", messages=HELLO, extra_headers={"x-tiergate-stage": "plan"}
    )
    assert completion.usage is not None
    stream = await client.chat.completions.create(model="b", messages=HELLO, stream=True)
    async for _ in stream:
        pass
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="nope", messages=HELLO)
    records = sorted(await ledger(store, 3), key=lambda r: r.at)
    first, second, third = records
    # Served by b after a failed: b's prices, a's failure in the fallbacks.
    assert (first.key_id, first.team, first.project, first.stage) == (
        key_id,
        "ml",
        "search",
        "plan",
    )
    assert (first.model, first.tier, first.attempts, first.fallbacks) == ("a", "b", 2, "a:status")
    assert (first.input_tokens, first.output_tokens) == (
        PROMPT_TOKENS,
        completion.usage.completion_tokens,
    )
    expected = (PROMPT_TOKENS * 2.0 + completion.usage.completion_tokens * 8.0) / 1e6
    assert first.cost_usd == pytest.approx(expected)
    assert first.status == 200
    assert first.ttft_s is None
    assert (second.model, second.tier, second.status) == ("b", "b", 200)
    assert second.ttft_s is not None
    assert second.cost_usd > 0
    assert (third.model, third.tier, third.status, third.cost_usd) == ("unknown", "none", 404, 0.0)
    assert third.error == "model_not_found"
    await client.close()


def body_bytes(max_tokens: int) -> bytes:
    return orjson.dumps({"model": "a", "messages": HELLO, "max_tokens": max_tokens})


async def test_concurrent_requests_never_overspend_a_budget(
    gateway: StartGateway, upstreams: StartUpstreams, tmp_path: Path
) -> None:
    (a,) = await upstreams("a")
    a.stall_s = 0.5  # every request reserves before the first one settles
    store = tmp_path / "ledger.db"
    gw = await gateway(governed([tier("a", a, pricing=PRICE)], store))
    body = body_bytes(10)
    # Reservation: every body byte a prompt token, plus max_tokens, at $0.001 a token.
    reservation = (len(body) + 10) / 1000
    key, key_id = await create_key(gw, budget_usd=round(50 * reservation, 6))
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    async def one() -> tuple[int, Any]:
        async with gw.http.post(gw.url + CHAT, data=body, headers=headers) as response:
            return response.status, await response.json()

    results = await asyncio.gather(*(one() for _ in range(200)))
    statuses = [status for status, _ in results]
    assert statuses.count(200) == 50
    assert statuses.count(429) == 150
    refused = next(body for status, body in results if status == 429)["error"]
    assert refused["code"] == "budget_exceeded"
    assert refused["scope"] == f"key:{key_id}"
    assert refused["reset_at"].endswith("T00:00:00Z")
    records = await ledger(store, 200)
    spent = sum(r.cost_usd for r in records if r.key_id == key_id)
    assert spent == pytest.approx(50 * (PROMPT_TOKENS + 5) / 1000)
    assert spent <= 50 * reservation
    text = await gw.metrics()
    scope = f"key:{key_id}"
    assert (
        metric(text, "tiergate_governance_refusals_total", reason="budget_exceeded", scope=scope)
        == 150
    )
    assert metric(text, "tiergate_budget_used_ratio", scope=scope) > 0
    assert metric(text, "tiergate_ledger_available") == 1
    assert metric(text, "tiergate_ledger_queued_records") == 0


async def test_a_team_budget_with_action_cheapest_keeps_to_the_cheapest_tier(
    gateway: StartGateway, upstreams: StartUpstreams, tmp_path: Path
) -> None:
    dear, cheap = await upstreams("dear", "cheap")
    tiers = [
        tier("dear", dear, pricing={"per": "1k", "input": 10.0, "output": 10.0}),
        tier("cheap", cheap, pricing={"per": "1k", "input": 0.01, "output": 0.01}),
    ]
    text = governed(
        tiers, tmp_path / "ledger.db", budgets=[{"team": "ml", "usd": 1.0, "action": "cheapest"}]
    )
    gw = await gateway(text)
    key, _ = await create_key(gw, team="ml")
    client = client_for(gw, key)
    # On "dear" the request could cost more than the budget; on "cheap" it fits.
    raw = await client.chat.completions.with_raw_response.create(
        model="dear", messages=HELLO, max_tokens=100
    )
    assert raw.headers["x-tiergate-tier"] == "cheap"
    assert "cheapest tiers only" in raw.headers["x-tiergate-budget-warning"]
    await client.close()


async def test_soft_limit_warns_in_a_header(
    gateway: StartGateway, upstreams: StartUpstreams, tmp_path: Path
) -> None:
    (a,) = await upstreams("a")
    text = governed(
        [tier("a", a, pricing=PRICE)],
        tmp_path / "ledger.db",
        budgets=[{"team": "ml", "usd": 1.0, "softPercent": 1}],
    )
    gw = await gateway(text)
    key, _ = await create_key(gw, team="ml")
    client = client_for(gw, key)
    warnings: list[str] = []

    async def warned() -> bool:
        # Each request spends 12 tokens ($0.012): past 1% of $1 once the first has settled.
        raw = await client.chat.completions.with_raw_response.create(
            model="a", messages=HELLO, max_tokens=10
        )
        warnings.append(raw.headers.get("x-tiergate-budget-warning", ""))
        return bool(warnings[-1])

    await eventually(warned, what="a soft-limit warning")
    assert warnings[0] == ""
    assert warnings[-1].startswith("team:ml at ")
    assert "of $1 (month)" in warnings[-1]
    await client.close()


async def test_traces_of_requests_and_attempts_reach_an_otlp_collector(
    gateway: StartGateway, upstreams: StartUpstreams, tmp_path: Path
) -> None:
    from tests.telemetry.otlp_receiver import OtlpReceiver  # noqa: PLC0415

    a, b = await upstreams("a", "b")
    a.status = 503
    async with OtlpReceiver() as collector:
        text = governed(
            [tier("a", a, pricing=PRICE), tier("b", b, pricing=PRICE)], tmp_path / "l.db"
        )
        text += yaml.safe_dump({"tracing": {"otlpEndpoint": collector.traces_url}})
        gw = await gateway(text)
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        parent = "00f067aa0ba902b7"
        status, _, _ = await gw.post(
            CHAT,
            {"model": "a", "messages": HELLO},
            headers={"traceparent": f"00-{trace_id}-{parent}-01", "x-tiergate-stage": "retrieve"},
        )
        assert status == 200
        assert gw.app is not None
        await gw.app[STATE].router.tracing.aclose()  # flushes the batch exporter
        spans = collector.spans
    request = next(s for s in spans if s.name == "chat a")
    attempts = [s for s in spans if s.parent_span_id == request.span_id]
    assert request.trace_id == trace_id
    assert request.parent_span_id == parent
    assert request.attributes["tiergate.stage"] == "retrieve"
    assert request.attributes["tiergate.tier"] == "b"
    assert request.attributes["gen_ai.usage.input_tokens"] == PROMPT_TOKENS
    assert request.attributes["tiergate.cost_usd"] == pytest.approx((PROMPT_TOKENS + 5) / 1000)
    assert [
        (s.attributes["tiergate.tier"], s.attributes["tiergate.outcome"]) for s in attempts
    ] == [
        ("a", "status"),
        ("b", "ok"),
    ]


@pytest.mark.parametrize(("mode", "expected"), [("open", 200), ("closed", 503)])
async def test_limits_store_down_fails_open_or_closed(
    gateway: StartGateway, upstreams: StartUpstreams, tmp_path: Path, mode: str, expected: int
) -> None:
    from tests.gateway.helpers import free_port  # noqa: PLC0415

    (a,) = await upstreams("a")
    down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    text = governed(
        [tier("a", a, pricing=PRICE)],
        tmp_path / "ledger.db",
        redis=down,
        ledger={"store": f"sqlite:///{tmp_path / 'ledger.db'}", "onStoreDown": mode},
    )
    gw = await gateway(text)
    key, _ = await create_key(gw, rpm=10, budget_usd=5)
    status, _, body = await gw.post(
        CHAT,
        {"model": "a", "messages": HELLO, "max_tokens": 5},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert status == expected
    if mode == "closed":
        assert body["error"]["code"] == "limits_unavailable"
    else:
        assert metric(await gw.metrics(), "tiergate_governance_unchecked_total") == 2


async def test_admin_report_adds_up_the_ledger(
    gateway: StartGateway, upstreams: StartUpstreams, tmp_path: Path
) -> None:
    a, b = await upstreams("a", "b")
    store = tmp_path / "ledger.db"
    tiers = [tier("a", a, pricing=PRICE), tier("b", b, pricing={"gpuHourUsd": 2.0, "gpus": 4})]
    gw = await gateway(governed(tiers, store))
    ml, _ = await create_key(gw, team="ml")
    ops, _ = await create_key(gw, team="ops")
    for key, model, count in ((ml, "a", 3), (ops, "a", 1), (ops, "b", 2)):
        for _ in range(count):
            status, _, _ = await gw.post(
                CHAT,
                {"model": model, "messages": HELLO},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert status == 200
    records = await ledger(store, 6)
    month = time.strftime("%Y-%m", time.gmtime(records[0].at))
    status, report = await admin(gw, "GET", f"/admin/report?month={month}&by=team")
    assert status == 200
    rows = {row["team"]: row for row in report["rows"]}
    assert (rows["ml"]["requests"], rows["ops"]["requests"]) == (3, 3)
    assert rows["ml"]["costUsd"] == pytest.approx(3 * (PROMPT_TOKENS + 5) / 1000)
    assert rows["ops"]["costUsd"] == pytest.approx(1 * (PROMPT_TOKENS + 5) / 1000)  # b: GPU-hours
    assert rows["ops"]["tierShare"] == {
        "a": pytest.approx(1 / 3, abs=1e-4),
        "b": pytest.approx(2 / 3, abs=1e-4),
    }
    (gpu,) = report["gpuTiers"]
    assert (gpu["tier"], gpu["tokens"]) == ("b", 2 * (PROMPT_TOKENS + 5))
    assert gpu["usdPer1kTokens"] == pytest.approx(
        2.0 * 4 * gpu["hours"] / gpu["tokens"] * 1000, rel=1e-4
    )
    headers = {"Authorization": f"Bearer {MASTER}"}
    async with gw.http.get(
        f"{gw.url}/admin/report?month={month}&by=tier&format=csv", headers=headers
    ) as r:
        assert r.status == 200
        assert r.content_type == "text/csv"
        assert (await r.text()).splitlines()[0].startswith("tier,")
    status, bad = await admin(gw, "GET", "/admin/report?month=2026-13")
    assert (status, bad["error"]["param"]) == (400, "month")
