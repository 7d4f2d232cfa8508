"""``/admin/``: virtual keys and reports over HTTP, for the fleet's master key only.

``Authorization: Bearer <governance.masterKey>`` (compared in constant time). Without a
``masterKey`` in the fleet the admin API is off and answers 401 saying so.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from tiergate.gateway.body import read_body
from tiergate.gateway.governance import GovernanceGate
from tiergate.gateway.openai_errors import OpenAIError
from tiergate.gateway.state import STATE
from tiergate.ledger.keys import MAX_BUDGET_USD, MAX_PER_MINUTE, key_view, new_key, presented_key
from tiergate.ledger.records import KeyRecord
from tiergate.ledger.report import (
    GroupBy,
    build_report,
    gpu_costs,
    parse_month,
    report_csv,
    report_json,
)


def add_admin_routes(app: web.Application) -> None:
    app.router.add_get("/admin/keys", _list_keys)
    app.router.add_post("/admin/keys", _create_key)
    app.router.add_delete("/admin/keys/{key_id}", _revoke_key)
    app.router.add_get("/admin/report", _report)


def _gate(request: web.Request) -> GovernanceGate:
    gate = request.app[STATE].router.governance
    master = gate.master_key if gate is not None else None
    if gate is None or master is None:
        raise OpenAIError(
            401,
            "The admin API is off: the fleet has no governance.masterKey.",
            type_="invalid_request_error",
            code="admin_disabled",
        )
    presented = presented_key(request.headers)
    # surrogateescape: header bytes that are not UTF-8 reach us escaped; compared as sent.
    if presented is None or not hmac.compare_digest(
        presented.encode("utf-8", "surrogateescape"), master.encode("utf-8", "surrogateescape")
    ):
        raise OpenAIError(
            401,
            "The admin API needs the master key: 'Authorization: Bearer <masterKey>'.",
            type_="invalid_request_error",
            code="invalid_master_key",
        )
    return gate


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(exc: OpenAIError) -> web.Response:
    return web.Response(body=exc.body(), status=exc.status, content_type="application/json")


async def _list_keys(request: web.Request) -> web.Response:
    try:
        gate = _gate(request)
    except OpenAIError as exc:
        return _error(exc)
    keys = await gate.store.list_keys()
    return _json({"object": "list", "data": [key_view(k) for k in keys]})


async def _create_key(request: web.Request) -> web.Response:
    try:
        gate = _gate(request)
        settings = request.app[STATE].router.fleet.gateway
        raw = await read_body(request, settings.max_body_bytes, settings.body_timeout_s)
        template = _key_template(raw)
        _check_models(template.models, request.app[STATE].router.entries)
    except OpenAIError as exc:
        return _error(exc)
    key, record = new_key(template)
    await gate.store.add_key(record)
    await gate.keys.refresh()
    return _json({**key_view(record), "key": key}, status=201)


async def _revoke_key(request: web.Request) -> web.Response:
    try:
        gate = _gate(request)
    except OpenAIError as exc:
        return _error(exc)
    key_id = request.match_info["key_id"]
    if not await gate.store.revoke_key(key_id, time.time()):
        return _error(OpenAIError(404, f"No active key with id {key_id}.", code="key_not_found"))
    await gate.keys.refresh()
    return _json({"key_id": key_id, "revoked": True})


_MAXIMA: dict[str, float] = {
    "budget_usd": MAX_BUDGET_USD,
    "rpm": MAX_PER_MINUTE,
    "tpm": MAX_PER_MINUTE,
}

_FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "team": str,
    "project": str,
    "budget_usd": (int, float),
    "budget_days": int,
    "rpm": int,
    "tpm": int,
}


async def _report(request: web.Request) -> web.Response:
    """``GET /admin/report?month=2026-11&by=team&format=json|csv``: ``tiergate report``'s."""
    try:
        gate = _gate(request)
        query = request.query
        month = query.get("month") or time.strftime("%Y-%m", time.gmtime())
        try:
            period = parse_month(month)
            by = GroupBy(query.get("by", "team"))
        except ValueError as exc:
            raise OpenAIError(
                400, str(exc), param="month" if "month" in str(exc) else "by"
            ) from exc
        output = query.get("format", "json")
        if output not in ("json", "csv"):
            raise OpenAIError(400, "'format' is json or csv.", param="format")
    except OpenAIError as exc:
        return _error(exc)
    records = await gate.store.requests(period.start, period.end)
    fleet = request.app[STATE].router.fleet
    report = build_report(records, period, by, gpu_costs(fleet.tiers), now=time.time())
    if output == "csv":
        return web.Response(text=report_csv(report), content_type="text/csv")
    return _json(report_json(report))


def _check_models(models: tuple[str, ...], known: Mapping[str, object]) -> None:
    """400 for a model name no tier of the fleet answers to: such a key could never be used."""
    unknown = [name for name in models if name not in known]
    if unknown:
        raise OpenAIError(
            400,
            f"Unknown model {', '.join(unknown)}: the fleet's models are "
            f"{', '.join(sorted(known))}.",
            param="models",
            code="model_not_found",
        )


def _key_template(raw: bytes) -> KeyRecord:
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as exc:
        raise OpenAIError(400, f"The body is not JSON: {exc}", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise OpenAIError(400, "The body must be a JSON object.", code="invalid_json")
    for name, value in body.items():
        kind = _FIELDS.get(name)
        if name == "models":
            if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
                raise OpenAIError(400, "'models' must be an array of strings.", param="models")
        elif kind is None:
            allowed = ", ".join([*_FIELDS, "models"])
            raise OpenAIError(400, f"Unknown field '{name}' (allowed: {allowed}).", param=name)
        elif value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise OpenAIError(400, f"'{name}' has the wrong type.", param=name)
        elif isinstance(value, int | float) and value <= 0 and name != "budget_days":
            raise OpenAIError(400, f"'{name}' must be positive.", param=name)
        elif isinstance(value, int | float) and name in _MAXIMA and value > _MAXIMA[name]:
            raise OpenAIError(400, f"'{name}' must be at most {_MAXIMA[name]:g}.", param=name)
    days = body.get("budget_days") or 0
    if days < 0 or days > 366:
        raise OpenAIError(
            400, "'budget_days' must be 0 (calendar month) to 366.", param="budget_days"
        )
    return KeyRecord(
        key_id="",
        key_hash="",
        name=body.get("name"),
        team=body.get("team"),
        project=body.get("project"),
        models=tuple(body.get("models") or ()),
        budget_usd=float(body["budget_usd"]) if body.get("budget_usd") else None,
        budget_days=days,
        rpm=body.get("rpm"),
        tpm=body.get("tpm"),
        created_at=time.time(),
    )
