"""The request headers whose values the gateway keeps: checked before anything else reads them.

``x-request-id``, the stage header and the W3C ``traceparent`` / ``tracestate`` are copied into
the ledger, into spans, into the response and upstream. aiohttp hands a header's bytes over as
UTF-8 with ``surrogateescape``, so one byte that is not UTF-8 arrives as a lone surrogate
(``"\\udcff"``), which no store or exporter can encode; and a value of any length would be
kept as it is. So a value must be printable ASCII (0x20-0x7e) of bounded length, else the
request is refused with a 400 ``invalid_header`` naming the header, before it is logged,
recorded or traced with that value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tiergate.gateway.openai_errors import OpenAIError
from tiergate.telemetry.tracing import TRACEPARENT_HEADER, TRACESTATE_HEADER

REQUEST_ID_HEADER = "x-request-id"

# The longest value accepted per header. A request id fits a UUID, a ULID or a trace id with a
# prefix; a stage is a short label (``plan``, ``retrieve``); a version-00 traceparent is 55
# characters (later versions may add fields); a tracestate of 32 members, the W3C maximum,
# fits in 4096 when its members are of the sizes vendors use (W3C asks to pass on 512 at least).
REQUEST_ID_MAX_CHARS = 128
STAGE_MAX_CHARS = 64
TRACEPARENT_MAX_CHARS = 256
TRACESTATE_MAX_CHARS = 4096


@dataclass(frozen=True, slots=True)
class ClientHeaders:
    """The checked values of the headers the gateway keeps; None where a header is absent or
    empty."""

    request_id: str | None = None
    stage: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None


NO_HEADERS = ClientHeaders()


def client_headers(headers: Mapping[str, str], stage_header: str) -> ClientHeaders:
    """The values of ``headers`` that the gateway keeps, each checked.

    Raises :class:`OpenAIError` 400 ``invalid_header`` (``param``: the header's name) for a
    value that is not printable ASCII or is longer than its bound.
    """
    return ClientHeaders(
        request_id=checked(headers, REQUEST_ID_HEADER, REQUEST_ID_MAX_CHARS),
        stage=checked(headers, stage_header, STAGE_MAX_CHARS),
        traceparent=checked(headers, TRACEPARENT_HEADER, TRACEPARENT_MAX_CHARS),
        tracestate=checked(headers, TRACESTATE_HEADER, TRACESTATE_MAX_CHARS),
    )


def checked(headers: Mapping[str, str], name: str, max_chars: int) -> str | None:
    """Header ``name``'s value (None when absent or empty), or 400 when it is not acceptable."""
    value = headers.get(name)
    if not value:
        return None
    if len(value) > max_chars:
        raise _invalid(name, f"is {len(value)} characters long; at most {max_chars} are allowed")
    if not (value.isascii() and value.isprintable()):  # for ASCII: exactly 0x20-0x7e
        raise _invalid(name, "may contain only printable ASCII characters (0x20-0x7e)")
    return value


def _invalid(name: str, why: str) -> OpenAIError:
    return OpenAIError(
        400, f"The header '{name}' {why}.", param=name.lower(), code="invalid_header"
    )
