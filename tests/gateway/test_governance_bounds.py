"""Governance that never overspends: what a request may generate (output limit x choices) is
what budgets reserve and TPM counts; key restrictions hold on every tier; key figures are
bounded (SQLite store, official client where it can send the request)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from tests.gateway.helpers import (
    CHAT,
    HELLO,
    Gateway,
    StartGateway,
    StartUpstreams,
    refused_url,
    tier,
)
from tests.gateway.test_governance import PRICE, admin, client_for, create_key, governed

COMPLETIONS = "/v1/completions"


async def post_with(
    gw: Gateway, key: str, path: str, body: bytes
) -> tuple[int, dict[str, str], Any]:
    return await gw.post(
        path,
        data=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )


@pytest.mark.parametrize(
    "case",
    [
        (CHAT, {"messages": HELLO, "n": 20}, 20),
        (COMPLETIONS, {"prompt": "hello", "n": 2, "best_of": 5}, 5),
    ],
    ids=["chat-n", "completions-best_of"],
)
async def test_a_budget_reserves_every_choice(
    gateway: StartGateway,
    upstreams: StartUpstreams,
    tmp_path: Path,
    case: tuple[str, dict[str, Any], int],
) -> None:
    path, fields, choices = case
    (a,) = await upstreams("a")
    # $1 per 1k tokens: one choice of 30 tokens fits $0.15 with its prompt bound, 5 or 20 do not.
    text = governed(
        [tier("a", a, pricing=PRICE)], tmp_path / "ledger.db", budgets=[{"team": "ml", "usd": 0.15}]
    )
    gw = await gateway(text)
    key, _ = await create_key(gw, team="ml")
    many = orjson.dumps({"model": "a", "max_tokens": 30, **fields})
    status, _, body = await post_with(gw, key, path, many)
    assert status == 429, body
    error = body["error"]
    assert (error["type"], error["code"], error["scope"]) == (
        "insufficient_quota",
        "budget_exceeded",
        "team:ml",
    )
    # Every body byte a prompt token, plus 30 output tokens per generated sequence.
    assert f"may cost up to ${(len(many) + 30 * choices) / 1000:.4f}" in error["message"]
    assert a.posts() == []
    one = {k: v for k, v in fields.items() if k not in ("n", "best_of")}
    status, _, body = await post_with(
        gw, key, path, orjson.dumps({"model": "a", "max_tokens": 30, **one})
    )
    assert status == 200, body


async def test_the_official_client_sees_insufficient_quota(
    gateway: StartGateway, upstreams: StartUpstreams, tmp_path: Path
) -> None:
    (a,) = await upstreams("a")
    text = governed(
        [tier("a", a, pricing=PRICE)], tmp_path / "ledger.db", budgets=[{"team": "ml", "usd": 0.05}]
    )
    gw = await gateway(text)
    key, _ = await create_key(gw, team="ml")
    async with client_for(gw, key) as client:
        with pytest.raises(openai.RateLimitError) as refused:
            await client.chat.completions.create(model="a", messages=HELLO, max_tokens=5, n=20)
    assert refused.value.type == "insufficient_quota"
    assert refused.value.code == "budget_exceeded"
    assert a.posts() == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tokens", "100000"),
        ("max_tokens", 100000.0),
        ("max_completion_tokens", "100000"),
        ("max_tokens", 0),
        ("max_tokens", True),
        ("n", "20"),
        ("n", 0),
        ("n", 129),
        ("n", 2.0),
    ],
)
async def test_output_limits_and_choices_must_be_integers_in_range(
    gateway: StartGateway, upstreams: StartUpstreams, tmp_path: Path, field: str, value: Any
) -> None:
    (a,) = await upstreams("a")
    text = governed(
        [tier("a", a, pricing=PRICE)], tmp_path / "ledger.db", budgets=[{"team": "ml", "usd": 5}]
    )
    gw = await gateway(text)
    key, _ = await create_key(gw, team="ml")
    raw = orjson.dumps({"model": "a", "messages": HELLO, field: value})
    status, _, body = await post_with(gw, key, CHAT, raw)
    assert status == 400, body
    assert body["error"]["param"] == field
    assert field in body["error"]["message"]
    assert a.posts() == []  # never forwarded: an engine would have read it as 100000


async def test_best_of_must_be_an_integer_on_completions(
    gateway: StartGateway, upstreams: StartUpstreams, tmp_path: Path
) -> None:
    (a,) = await upstreams("a")
    gw = await gateway(governed([tier("a", a, pricing=PRICE)], tmp_path / "ledger.db"))
    key, _ = await create_key(gw, budget_usd=5)
    raw = orjson.dumps({"model": "a", "prompt": "hi", "best_of": "5"})
    status, _, body = await post_with(gw, key, COMPLETIONS, raw)
    assert (status, body["error"]["param"]) == (400, "best_of")


async def test_tpm_counts_the_output_limit_and_settles_to_actual_tokens(
    gateway: StartGateway, upstreams: StartUpstreams, tmp_path: Path
) -> None:
    (a,) = await upstreams("a")
    gw = await gateway(governed([tier("a", a, pricing=PRICE)], tmp_path / "ledger.db"))
    key, _ = await create_key(gw, tpm=1000)
    async with client_for(gw, key) as client:
        for _ in range(3):
            with pytest.raises(openai.RateLimitError) as refused:
                await client.chat.completions.create(model="a", messages=HELLO, max_tokens=50000)
            assert refused.value.code == "rate_limit_exceeded"
            assert "can never be admitted" in refused.value.message
            assert "retry-after" not in refused.value.response.headers  # it never would be
        # 400 output tokens fit 1000 twice, not three times, as estimates: each request gives
        # back what it did not generate (12 tokens were used, settled as its response is sent),
        # so all three are served.
        for _ in range(3):
            raw = await client.chat.completions.with_raw_response.create(
                model="a", messages=HELLO, max_tokens=400
            )
            assert raw.http_response.status_code == 200
    assert len(a.posts()) == 3


async def test_a_key_limited_to_a_tier_is_not_served_by_the_next_one(
    gateway: StartGateway, upstreams: StartUpstreams, tmp_path: Path
) -> None:
    (bedrock,) = await upstreams("bedrock")
    tiers = [tier("onprem", refused_url()), tier("bedrock", bedrock, pricing=PRICE)]
    gw = await gateway(governed(tiers, tmp_path / "ledger.db"))
    onprem_only, _ = await create_key(gw, models=["onprem"])
    status, headers, body = await gw.post(
        CHAT,
        {"model": "onprem", "messages": HELLO},
        headers={"Authorization": f"Bearer {onprem_only}"},
    )
    assert status == 502, body
    assert "x-tiergate-tier" not in headers
    assert [a["tier"] for a in body["error"]["attempts"]] == ["onprem"]
    assert body["error"]["skipped"] == [{"tier": "bedrock", "reason": "key_not_allowed"}]
    assert "key_not_allowed" in body["error"]["message"]
    assert bedrock.posts() == []
    # A key that lists the fallback tier too falls back to it.
    with_fallback, _ = await create_key(gw, models=["onprem", "bedrock"])
    status, headers, _ = await gw.post(
        CHAT,
        {"model": "onprem", "messages": HELLO},
        headers={"Authorization": f"Bearer {with_fallback}"},
    )
    assert (status, headers["x-tiergate-tier"]) == (200, "bedrock")


async def test_a_key_may_name_tiers_by_their_upstream_model(
    gateway: StartGateway, upstreams: StartUpstreams, tmp_path: Path
) -> None:
    (b,) = await upstreams("b")
    tiers = [tier("a", refused_url()), tier("b", b, model="org/fallback")]
    gw = await gateway(governed(tiers, tmp_path / "ledger.db"))
    key, _ = await create_key(gw, models=["a", "org/fallback"])
    status, headers, _ = await gw.post(
        CHAT, {"model": "a", "messages": HELLO}, headers={"Authorization": f"Bearer {key}"}
    )
    assert (status, headers["x-tiergate-tier"]) == (200, "b")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rpm", 2**63),
        ("tpm", 10**13),
        ("budget_usd", 1e300),
        ("budget_days", 2**70),
    ],
)
async def test_admin_keys_refuses_out_of_range_figures_with_a_400(
    gateway: StartGateway, upstreams: StartUpstreams, tmp_path: Path, field: str, value: Any
) -> None:
    (a,) = await upstreams("a")
    gw = await gateway(governed([tier("a", a)], tmp_path / "ledger.db"))
    status, body = await admin(gw, "POST", "/admin/keys", {field: value})
    assert status == 400, body
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == field
    status, listed = await admin(gw, "GET", "/admin/keys")
    assert (status, listed["data"]) == (200, [])


async def test_admin_keys_refuses_models_the_fleet_does_not_have(
    gateway: StartGateway, upstreams: StartUpstreams, tmp_path: Path
) -> None:
    (a,) = await upstreams("a")
    gw = await gateway(governed([tier("a", a)], tmp_path / "ledger.db"))
    status, body = await admin(gw, "POST", "/admin/keys", {"models": ["a", "nosuch"]})
    assert (status, body["error"]["param"], body["error"]["code"]) == (
        400,
        "models",
        "model_not_found",
    )
    assert "nosuch" in body["error"]["message"]
