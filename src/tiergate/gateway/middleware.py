"""Errors aiohttp raises around the handlers (unknown route, wrong method), in OpenAI's JSON.

Every route today belongs to the OpenAI-compatible surface or is the gateway's own (health,
metrics, admin), and all of them answer errors in OpenAI's shape. An API of another vendor
added later gets its own shape from its own middleware, keyed on its path prefix.
"""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from tiergate.gateway.openai_errors import OpenAIError


def _shaped(request: web.Request, exc: web.HTTPException) -> OpenAIError:
    if exc.status == 404:
        message = f"Invalid URL ({request.method} {request.path})."
        return OpenAIError(404, message, code="unknown_url")
    if exc.status == 405:
        allowed = exc.headers.get(hdrs.ALLOW, "")
        message = f"Method {request.method} is not allowed on {request.path} (allowed: {allowed})."
        return OpenAIError(405, message, code="method_not_allowed")
    type_ = "server_error" if exc.status >= 500 else "invalid_request_error"
    return OpenAIError(exc.status, exc.reason, type_=type_)


# Headers of an aiohttp HTTPException that describe its text body, which is replaced.
_BODY_HEADERS = frozenset({"content-type", "content-length"})


@web.middleware
async def openai_error_shape(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn aiohttp's own HTTP errors (4xx, 5xx) into OpenAI's error JSON; keep their headers
    (``Allow`` on a 405)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = _shaped(request, exc)
        headers = {k: v for k, v in exc.headers.items() if k.lower() not in _BODY_HEADERS}
        return web.Response(
            body=error.body(), status=exc.status, headers=headers, content_type="application/json"
        )
