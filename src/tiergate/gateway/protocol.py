"""The HTTP connection layer: what aiohttp's server does before and around a handler.

Three things are decided here rather than in aiohttp's defaults:

- **No automatic decoding** of ``Content-Encoding``: :mod:`tiergate.gateway.body` decodes with
  a bound on the decoded size (aiohttp inflates whole bodies, and would do it again while
  discarding the unread body of a refused request).
- **A bound on slow headers**: aiohttp's keep-alive timer runs from a connection's start and
  from the end of each response until the next request's headers are complete, so it is the
  header timeout (``gateway.headerTimeoutMs``), and it ends idle keep-alive connections too.
- **Requests aiohttp refuses itself** (malformed HTTP, a control character in a header) are
  logged without the bytes of the request, which can hold a key, and answered in OpenAI's
  error JSON by :class:`GatewayRunner`'s connections.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from tiergate.gateway.openai_errors import OpenAIError
from tiergate.spec.fleet import GatewaySettings

log = logging.getLogger("tiergate.gateway.http")


def server_options(settings: GatewaySettings) -> dict[str, Any]:
    """The ``handler_args`` of the gateway's application: every runner serving it gets them.

    They are read when the server starts: a reload does not change them.
    """
    return {
        "auto_decompress": False,
        "keepalive_timeout": settings.header_timeout_s,
        "logger": _RequestBytesWithheld(log, {}),
    }


class _RequestBytesWithheld(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server log, minus the request bytes it quotes when it refuses a request.

    Its parser's errors carry the offending line, say ``Authorization: Bearer sk-…\\r``: they
    are logged at INFO as the error's kind and status only. Other records pass unchanged.
    """

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            self.logger.info("refused a malformed request (%d %s)", exc.code, type(exc).__name__)
            return
        super().log(level, msg, *args, **kwargs)


def _refusal(status: int, exc: BaseException | None) -> OpenAIError:
    if status >= 500:
        return OpenAIError(
            status,
            "The gateway had an error while processing your request.",
            type_="server_error",
        )
    kind = type(exc).__name__ if exc is not None else "bad request"
    # The parser's message quotes the request's bytes: only its kind is named.
    return OpenAIError(status, f"The request is not valid HTTP ({kind}).", code="invalid_http")


class _Connection(RequestHandler):
    """aiohttp's connection handler, answering the errors it handles itself in OpenAI's JSON."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # The parent logs (through the withholding logger) and refuses to answer twice.
        super().handle_error(request, status, exc, message)
        error = _refusal(status, exc)
        response = web.Response(body=error.body(), status=status, content_type="application/json")
        response.force_close()
        return response


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _Connection(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """An :class:`aiohttp.web.AppRunner` whose connections are :class:`_Connection`."""

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return _Server(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=made._loop,
            **made._kwargs,
        )
