"""``GET /openapi.json``: the gateway's HTTP API as an OpenAPI 3.1 document.

The paths come from the application's own route table, so a route that is registered is a route
that is published; what each one takes and answers comes from :data:`OPERATIONS`, keyed by
method and path. A registered route without an entry there is still published, with its
handler's docstring as summary and only the error schema (the tests fail on such a route, so
that the table keeps up with the routes). aiohttp's implicit ``HEAD`` of every ``GET`` is left
out: it answers as the ``GET`` does, without a body.

Request schemas state what the gateway itself checks before a request reaches a tier; every other
field of an OpenAI request is forwarded untouched, so the schemas allow additional properties.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal

import orjson
from aiohttp import web

from tiergate._version import __version__
from tiergate.gateway.state import STATE
from tiergate.ledger.report import GroupBy

Access = Literal["client", "admin", "public"]
Schema = dict[str, Any]

_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_PATH_PARAMETER = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


@dataclass(frozen=True, slots=True)
class Operation:
    """What one route takes and answers.

    ``ok`` maps each success status to its content (media type → schema); ``errors`` lists the
    statuses the gateway itself answers with OpenAI error JSON (any other status, such as an
    upstream's error relayed as it came, falls under ``default``). ``access`` selects the
    security requirement: ``client`` (a virtual key, optional while the fleet runs open),
    ``admin`` (the master key) or ``public`` (none).
    """

    summary: str
    tag: str
    access: Access
    ok: Mapping[str, Mapping[str, Schema]]
    errors: tuple[int, ...] = ()
    body: str | None = None  # name of the JSON request body's schema in components
    query: tuple[tuple[str, Schema], ...] = ()
    description: str = ""


def _json(name: str) -> Mapping[str, Schema]:
    return {"application/json": {"$ref": f"#/components/schemas/{name}"}}


_ANY_JSON: Mapping[str, Schema] = {"application/json": {"type": "object"}}
# A stream is described by one of its events (as OpenAPI 3.2's itemSchema would, and as
# schemathesis reads it): a ``data:`` line holding a chunk's JSON, an error's, or ``[DONE]``.
_SSE_EVENT: Schema = {
    "type": "object",
    "required": ["data"],
    "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
}
_PROXIED = (400, 401, 403, 404, 413, 429, 502, 503, 504)

OPERATIONS: Mapping[tuple[str, str], Operation] = {
    ("POST", "/v1/chat/completions"): Operation(
        "Chat completion, down the fleet's cascade",
        "openai",
        "client",
        {"200": {**_ANY_JSON, "text/event-stream": _SSE_EVENT}},
        _PROXIED,
        body="ChatCompletionRequest",
        description="With `stream: true` the answer is server-sent events.",
    ),
    ("POST", "/v1/completions"): Operation(
        "Text completion, down the fleet's cascade",
        "openai",
        "client",
        {"200": {**_ANY_JSON, "text/event-stream": _SSE_EVENT}},
        _PROXIED,
        body="CompletionRequest",
    ),
    ("POST", "/v1/embeddings"): Operation(
        "Embeddings, from tiers whose provider supports them",
        "openai",
        "client",
        {"200": _ANY_JSON},
        _PROXIED,
        body="EmbeddingRequest",
    ),
    ("GET", "/v1/models"): Operation(
        "Every model name a client may request", "openai", "client", {"200": _json("ModelList")}
    ),
    ("GET", "/v1/models/{model}"): Operation(
        "One model name a client may request",
        "openai",
        "client",
        {"200": _json("Model")},
        (404,),
    ),
    ("GET", "/health"): Operation(
        "Liveness: the process answers", "operations", "public", {"200": _json("Health")}
    ),
    ("GET", "/ready"): Operation(
        "Readiness: 200 while at least one tier can be attempted",
        "operations",
        "public",
        {"200": _json("Readiness"), "503": _json("Readiness")},
    ),
    ("GET", "/metrics"): Operation(
        "Prometheus text exposition",
        "operations",
        "public",
        {"200": {"text/plain": {"type": "string"}}},
    ),
    ("GET", "/openapi.json"): Operation(
        "This document", "operations", "public", {"200": {"application/json": {"type": "object"}}}
    ),
    ("GET", "/admin/keys"): Operation(
        "List the virtual keys (never their secrets)",
        "admin",
        "admin",
        {"200": _json("KeyList")},
        (401,),
    ),
    ("POST", "/admin/keys"): Operation(
        "Create a virtual key; the answer holds its secret, shown once",
        "admin",
        "admin",
        {"201": _json("CreatedKey")},
        (400, 401),
        body="KeyTemplate",
    ),
    ("DELETE", "/admin/keys/{key_id}"): Operation(
        "Revoke a virtual key", "admin", "admin", {"200": _json("Revoked")}, (401, 404)
    ),
    ("GET", "/admin/report"): Operation(
        "The month's cost report (`tiergate report`'s)",
        "admin",
        "admin",
        {"200": {**_ANY_JSON, "text/csv": {"type": "string"}}},
        (400, 401),
        query=(
            ("month", {"type": "string", "description": "YYYY-MM (UTC); this month by default"}),
            ("by", {"type": "string", "enum": [g.value for g in GroupBy]}),
            ("format", {"type": "string", "enum": ["json", "csv"]}),
        ),
    ),
}

_STRING_OR_ARRAY: Schema = {"oneOf": [{"type": "string"}, {"type": "array"}]}
_POSITIVE = {"type": "integer", "minimum": 1}
_GENERATION: Schema = {
    "model": {"type": "string", "minLength": 1},
    "stream": {"type": "boolean"},
    "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
    "max_tokens": _POSITIVE,
    "max_completion_tokens": _POSITIVE,
    "n": _POSITIVE,
}


def _request(required: str, schema: Schema, *, generation: bool = True) -> Schema:
    properties = dict(_GENERATION) if generation else {"model": _GENERATION["model"]}
    properties[required] = schema
    return {
        "type": "object",
        "required": ["model", required],
        "properties": properties,
        "additionalProperties": True,
    }


_NULLABLE_STRING: Schema = {"type": ["string", "null"]}
_KEY_FIELDS: Schema = {
    "name": _NULLABLE_STRING,
    "team": _NULLABLE_STRING,
    "project": _NULLABLE_STRING,
    "models": {"type": "array", "items": {"type": "string"}},
    "budget_usd": {"type": ["number", "null"], "exclusiveMinimum": 0},
    "budget_days": {"type": ["integer", "null"], "minimum": 0, "maximum": 366},
    "rpm": {"type": ["integer", "null"], "minimum": 1},
    "tpm": {"type": ["integer", "null"], "minimum": 1},
}
_KEY_VIEW: Schema = {
    "type": "object",
    "required": ["key_id"],
    "properties": {"key_id": {"type": "string"}},
}

SCHEMAS: Mapping[str, Schema] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": _NULLABLE_STRING,
                    "code": _NULLABLE_STRING,
                    "attempts": {
                        "type": "array",
                        "description": "the tiers tried, when the cascade ran out",
                        "items": {"type": "object"},
                    },
                },
            }
        },
    },
    "ChatCompletionRequest": _request(
        "messages", {"type": "array", "minItems": 1, "items": {"type": "object"}}
    ),
    "CompletionRequest": _request("prompt", _STRING_OR_ARRAY),
    "EmbeddingRequest": _request("input", _STRING_OR_ARRAY, generation=False),
    "Model": {
        "type": "object",
        "required": ["id", "object"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "model"},
            "created": {"type": "integer"},
            "owned_by": {"type": "string"},
        },
    },
    "ModelList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string"}},
    },
    "Readiness": {
        "type": "object",
        "required": ["status", "tiers"],
        "properties": {
            "status": {"enum": ["ready", "unavailable"]},
            "tiers": {"type": "object", "additionalProperties": {"type": "boolean"}},
        },
    },
    "KeyTemplate": {"type": "object", "properties": _KEY_FIELDS, "additionalProperties": False},
    "KeyList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": _KEY_VIEW}},
    },
    "CreatedKey": {
        "type": "object",
        "required": ["key_id", "key"],
        "properties": {"key_id": {"type": "string"}, "key": {"type": "string"}},
    },
    "Revoked": {
        "type": "object",
        "required": ["key_id", "revoked"],
        "properties": {"key_id": {"type": "string"}, "revoked": {"const": True}},
    },
}

_SECURITY: Mapping[Access, list[dict[str, list[str]]]] = {
    # An empty requirement: a fleet with ``keys: off`` (or ``auto`` before a key exists) is open.
    "client": [{"bearer": []}, {"apiKey": []}, {}],
    "admin": [{"bearer": []}],
    "public": [],
}


def openapi_document(app: web.Application, models: Sequence[str] = ()) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route ``app`` serves.

    ``models``, the names the fleet serves, become the enum of the requests' ``model``: any
    other name is answered 404 ``model_not_found``.
    """
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else None
        # HEAD: aiohttp's implicit one of each GET; "*": the catch-alls answering what no
        # operation takes (tiergate.gateway.unrouted), not operations of their own.
        if path is None or route.method in ("HEAD", "*"):
            continue
        described = OPERATIONS.get((route.method, path)) or _undescribed(route.handler)
        paths.setdefault(path, {})[route.method.lower()] = _operation(route.method, path, described)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tiergate gateway",
            "version": __version__,
            "description": "An OpenAI-compatible cascade gateway; errors in OpenAI's shape.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": _schemas(models),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
    }


async def openapi_json(request: web.Request) -> web.Response:
    """``GET /openapi.json``: the gateway's API as an OpenAPI 3.1 document."""
    # Built on each request: the fleet's model names change on reload.
    document = openapi_document(request.app, tuple(request.app[STATE].router.entries))
    return web.Response(body=orjson.dumps(document), content_type="application/json")


def _schemas(models: Sequence[str]) -> dict[str, Schema]:
    schemas = dict(SCHEMAS)
    if not models:
        return schemas
    model = {"type": "string", "enum": list(models), "description": "a name of GET /v1/models"}
    for name in ("ChatCompletionRequest", "CompletionRequest", "EmbeddingRequest"):
        schema = schemas[name]
        schemas[name] = {**schema, "properties": {**schema["properties"], "model": model}}
    return schemas


def _undescribed(handler: Any) -> Operation:
    doc = (getattr(handler, "__doc__", None) or "").strip().splitlines()
    return Operation(doc[0] if doc else "(undescribed)", "undescribed", "public", {})


def _operation(method: str, path: str, operation: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {
        status: {"description": _reason(int(status)), "content": _content(content)}
        for status, content in operation.ok.items()
    }
    for status in operation.errors:
        responses[str(status)] = _error_response(_reason(status))
    responses["default"] = _error_response("An error, in OpenAI's shape")
    result: dict[str, Any] = {
        "operationId": _operation_id(method, path),
        "summary": operation.summary,
        "tags": [operation.tag],
        "security": _SECURITY[operation.access],
        "responses": responses,
    }
    if operation.description:
        result["description"] = operation.description
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAMETER.findall(path)
    ]
    parameters += [{"name": n, "in": "query", "schema": s} for n, s in operation.query]
    if parameters:
        result["parameters"] = parameters
    if operation.body is not None:
        result["requestBody"] = {"required": True, "content": _content(_json(operation.body))}
    return result


def _content(content: Mapping[str, Schema]) -> dict[str, Any]:
    return {media_type: {"schema": schema} for media_type, schema in content.items()}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": _content({"application/json": _ERROR_REF})}


def _reason(status: int) -> str:
    return HTTPStatus(status).phrase


def _operation_id(method: str, path: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", path)
    return "_".join([method.lower(), *words])
