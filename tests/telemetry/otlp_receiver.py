"""A real OTLP/HTTP trace receiver on 127.0.0.1: decodes every export with opentelemetry-proto.

``OtlpReceiver`` accepts ``POST`` on any path (the tests check which path was used), keeps
each request's path, headers and decoded ``ExportTraceServiceRequest``, and answers as a
collector does: 200 with an empty ``ExportTraceServiceResponse``. ``status`` makes it answer
an error instead. ``spans`` flattens what arrived into :class:`ReceivedSpan` values.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.loopback import LoopbackServer

PROTOBUF = "application/x-protobuf"


@dataclass(frozen=True)
class Export:
    """One export request as it reached the receiver."""

    path: str
    headers: dict[str, str]  # names lower-cased
    message: ExportTraceServiceRequest


@dataclass(frozen=True)
class ReceivedSpan:
    """A span decoded from an export, with its resource's and scope's attributes."""

    name: str
    kind: int  # Span.SpanKind
    trace_id: str  # hex
    span_id: str
    parent_span_id: str  # "" for a root
    trace_state: str
    status_code: int  # Status.StatusCode
    status_message: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str


def decode_value(value: AnyValue) -> Any:
    """An OTLP ``AnyValue`` as a Python value (arrays as tuples)."""
    which = value.WhichOneof("value")
    if which == "array_value":
        return tuple(decode_value(v) for v in value.array_value.values)
    if which is None:
        return None
    return getattr(value, which)


def decode_attributes(attributes: list[KeyValue] | Any) -> dict[str, Any]:
    return {kv.key: decode_value(kv.value) for kv in attributes}


class OtlpReceiver(LoopbackServer):
    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.exports: list[Export] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def traces_url(self) -> str:
        return f"{self.base_url}/v1/traces"

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._export)
        return app

    async def _export(self, request: web.Request) -> web.Response:
        if self.status != 200:
            return web.Response(status=self.status, text="collector says no")
        if request.content_type != PROTOBUF:
            return web.Response(status=415, text=f"unsupported content type {request.content_type}")
        body = await request.read()
        # aiohttp may already have inflated the body; decode whatever form it has now.
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        elif request.headers.get("Content-Encoding") == "deflate" and body[:1] == b"\x78":
            body = zlib.decompress(body)
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        self.exports.append(
            Export(
                path=request.path,
                headers={k.lower(): v for k, v in request.headers.items()},
                message=message,
            )
        )
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(), content_type=PROTOBUF
        )

    @property
    def spans(self) -> list[ReceivedSpan]:
        found: list[ReceivedSpan] = []
        for export in self.exports:
            for resource_spans in export.message.resource_spans:
                resource = decode_attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        found.append(_received(span, resource, scope_spans.scope.name))
        return found


def _received(span: Span, resource: dict[str, Any], scope: str) -> ReceivedSpan:
    return ReceivedSpan(
        name=span.name,
        kind=span.kind,
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex(),
        trace_state=span.trace_state,
        status_code=span.status.code,
        status_message=span.status.message,
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano,
        attributes=decode_attributes(span.attributes),
        resource=resource,
        scope=scope,
    )


SERVER = Span.SpanKind.SPAN_KIND_SERVER
CLIENT = Span.SpanKind.SPAN_KIND_CLIENT
STATUS_ERROR = Status.StatusCode.STATUS_CODE_ERROR
STATUS_UNSET = Status.StatusCode.STATUS_CODE_UNSET
