"""An encoder for AWS event-stream messages (``application/vnd.amazon.eventstream``).

botocore ships only the decoder (:class:`botocore.eventstream.EventStreamBuffer`); the fake
Bedrock server needs the other half to write ConverseStream answers. One message, big-endian::

    total length (4 B) | headers length (4 B) | prelude CRC32 (4 B)
    headers: name length (1 B), name, value type (1 B, 7 = string), value length (2 B), value
    payload
    message CRC32 (4 B) over everything before it

Only string headers are written: they are all that Bedrock's events and exceptions carry.
"""

from __future__ import annotations

import binascii
import json
import struct
from typing import Any

STRING_HEADER_TYPE = 7
_PRELUDE = struct.Struct(">II")
_CRC = struct.Struct(">I")
_NAME_LENGTH = struct.Struct(">B")
_VALUE_PREFIX = struct.Struct(">BH")


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message with string ``headers`` and ``payload``, CRCs included."""
    encoded_headers = b"".join(_encode_header(name, value) for name, value in headers.items())
    total = _PRELUDE.size + _CRC.size + len(encoded_headers) + len(payload) + _CRC.size
    prelude = _PRELUDE.pack(total, len(encoded_headers))
    message = prelude + _CRC.pack(binascii.crc32(prelude)) + encoded_headers + payload
    return message + _CRC.pack(binascii.crc32(message))


def event_frame(event_type: str, payload: dict[str, Any]) -> bytes:
    """An ``event`` message: ``:event-type`` names the event, the JSON payload is its body."""
    headers = {
        ":message-type": "event",
        ":event-type": event_type,
        ":content-type": "application/json",
    }
    return encode_message(headers, _json(payload))


def exception_frame(exception_type: str, message: str) -> bytes:
    """An in-stream ``exception`` message, e.g. ``throttlingException`` (camelCase, as sent)."""
    headers = {
        ":message-type": "exception",
        ":exception-type": exception_type,
        ":content-type": "application/json",
    }
    return encode_message(headers, _json({"message": message}))


def _encode_header(name: str, value: str) -> bytes:
    raw_name = name.encode()
    raw_value = value.encode()
    if not 0 < len(raw_name) < 256:
        raise ValueError(f"header name must be 1-255 bytes: {name!r}")
    if len(raw_value) >= 1 << 16:
        raise ValueError(f"header {name!r}: a string value is at most 65535 bytes")
    return (
        _NAME_LENGTH.pack(len(raw_name))
        + raw_name
        + _VALUE_PREFIX.pack(STRING_HEADER_TYPE, len(raw_value))
        + raw_value
    )


def _json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()
