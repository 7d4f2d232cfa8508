"""Requests no route serves (an unknown path, a method a path does not take), in OpenAI's JSON.

aiohttp answers them itself in text/plain; a middleware could reshape those answers, but it
would wrap every request's handler (aiohttp builds the wrapper per request). Instead every
resource gets a catch-all route after its own, answering 405 with ``Allow``, and one last
resource catches every other path with a 404. Every route today belongs to the OpenAI-compatible
surface or is the gateway's own (health, metrics, admin); an API of another vendor added later
registers its own catch-alls, in its own error shape, for its own path prefix.
"""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from tiergate.gateway.openai_errors import OpenAIError


async def _unknown_url(request: web.Request) -> web.Response:
    error = OpenAIError(404, f"Invalid URL ({request.method} {request.path}).", code="unknown_url")
    return web.Response(body=error.body(), status=404, content_type="application/json")


def _method_not_allowed(allowed: str) -> Handler:
    async def answer(request: web.Request) -> web.Response:
        message = f"Method {request.method} is not allowed on {request.path} (allowed: {allowed})."
        error = OpenAIError(405, message, code="method_not_allowed")
        return web.Response(
            body=error.body(),
            status=405,
            headers={hdrs.ALLOW: allowed},
            content_type="application/json",
        )

    return answer


def add_unrouted(app: web.Application) -> None:
    """Answer, in OpenAI's error JSON, what the routes registered so far do not take."""
    for resource in list(app.router.resources()):
        if not isinstance(resource, web.Resource):  # static files and sub-apps: none today
            continue
        methods = sorted({route.method for route in resource} - {hdrs.METH_ANY})
        if methods:
            resource.add_route(hdrs.METH_ANY, _method_not_allowed(", ".join(methods)))
    # [\s\S]: a path holding a newline (%0A) is a path too.
    app.router.add_route(hdrs.METH_ANY, r"/{path:[\s\S]*}", _unknown_url)
