"""Errors in OpenAI's JSON shape: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

from typing import Any

import orjson


class OpenAIError(Exception):
    """An error the gateway answers with, in OpenAI's format. Raised inside the gateway only."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code
        self.extra = extra or {}
        self.headers = headers or {}  # sent with the error (Retry-After, …)

    def payload(self) -> dict[str, Any]:
        """The ``error`` object."""
        return {
            "message": self.message,
            "type": self.type,
            "param": self.param,
            "code": self.code,
            **self.extra,
        }

    def body(self) -> bytes:
        """The whole JSON body."""
        return orjson.dumps({"error": self.payload()})

    def sse_event(self) -> bytes:
        """The error as one SSE event, for a stream that already started."""
        return b"data: " + self.body() + b"\n\n"
