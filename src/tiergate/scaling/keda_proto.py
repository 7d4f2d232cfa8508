"""KEDA's ``externalscaler.proto``, described in Python and turned into message classes at run time.

The definition below is ``pkg/scalers/externalscaler/externalscaler.proto`` of kedacore/keda,
field for field (numbers, names, types, labels), as a ``FileDescriptorProto``: no protoc, no
generated code to keep in step. :func:`load` adds it to a fresh descriptor pool and returns its
message classes; the server and its tests each build their own, so neither depends on state
left by the other.

protobuf's message classes are dynamic, so mypy cannot see their fields. The ``*View``
protocols state the fields tiergate reads; :class:`ExternalScalerProto`'s ``read_*`` methods
are the only place where a parsed message is taken to have them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message

PACKAGE = "externalscaler"
SERVICE = f"{PACKAGE}.ExternalScaler"

_Field = descriptor_pb2.FieldDescriptorProto
_OPTIONAL = _Field.LABEL_OPTIONAL
_REPEATED = _Field.LABEL_REPEATED
_STRING = _Field.TYPE_STRING
_BOOL = _Field.TYPE_BOOL
_INT64 = _Field.TYPE_INT64
_DOUBLE = _Field.TYPE_DOUBLE
_MESSAGE = _Field.TYPE_MESSAGE

# (name, number, type, label, message type) per message, in the .proto's order.
_FieldDef = tuple[str, int, int, int, str | None]
_MESSAGES: dict[str, Sequence[_FieldDef]] = {
    "ScaledObjectRef": (
        ("name", 1, _STRING, _OPTIONAL, None),
        ("namespace", 2, _STRING, _OPTIONAL, None),
        # map<string, string> scalerMetadata = 3: a repeated entry message (see _map_entry)
        ("scalerMetadata", 3, _MESSAGE, _REPEATED, "ScaledObjectRef.ScalerMetadataEntry"),
    ),
    "IsActiveResponse": (("result", 1, _BOOL, _OPTIONAL, None),),
    "GetMetricSpecResponse": (("metricSpecs", 1, _MESSAGE, _REPEATED, "MetricSpec"),),
    "MetricSpec": (
        ("metricName", 1, _STRING, _OPTIONAL, None),
        ("targetSize", 2, _INT64, _OPTIONAL, None),  # deprecated (a comment, not an option)
        ("targetSizeFloat", 3, _DOUBLE, _OPTIONAL, None),  # KEDA >= 2.17
    ),
    "GetMetricsRequest": (
        ("scaledObjectRef", 1, _MESSAGE, _OPTIONAL, "ScaledObjectRef"),
        ("metricName", 2, _STRING, _OPTIONAL, None),
    ),
    "GetMetricsResponse": (("metricValues", 1, _MESSAGE, _REPEATED, "MetricValue"),),
    "MetricValue": (
        ("metricName", 1, _STRING, _OPTIONAL, None),
        ("metricValue", 2, _INT64, _OPTIONAL, None),  # deprecated (a comment, not an option)
        ("metricValueFloat", 3, _DOUBLE, _OPTIONAL, None),  # KEDA >= 2.17
    ),
}

# (method, request, response, server streaming)
_METHODS: Sequence[tuple[str, str, str, bool]] = (
    ("IsActive", "ScaledObjectRef", "IsActiveResponse", False),
    ("StreamIsActive", "ScaledObjectRef", "IsActiveResponse", True),
    ("GetMetricSpec", "ScaledObjectRef", "GetMetricSpecResponse", False),
    ("GetMetrics", "GetMetricsRequest", "GetMetricsResponse", False),
    # optional, on KEDA's main branch only; unimplemented servers keep KEDA in pull mode
    ("StreamMetricSpec", "ScaledObjectRef", "GetMetricSpecResponse", True),
)


def _add_fields(message: descriptor_pb2.DescriptorProto, fields: Sequence[_FieldDef]) -> None:
    for name, number, type_, label, type_name in fields:
        field = message.field.add(name=name, number=number, type=type_, label=label)
        if type_name is not None:
            field.type_name = f".{PACKAGE}.{type_name}"


def _map_entry(name: str) -> descriptor_pb2.DescriptorProto:
    """The entry message protoc writes for a ``map<string, string>`` field."""
    entry = descriptor_pb2.DescriptorProto(name=name)
    entry.options.map_entry = True
    _add_fields(
        entry,
        (("key", 1, _STRING, _OPTIONAL, None), ("value", 2, _STRING, _OPTIONAL, None)),
    )
    return entry


def file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """``externalscaler.proto`` (proto3, package ``externalscaler``) as a descriptor."""
    file = descriptor_pb2.FileDescriptorProto(
        name="externalscaler.proto", package=PACKAGE, syntax="proto3"
    )
    file.options.go_package = ".;externalscaler"
    for name, fields in _MESSAGES.items():
        message = file.message_type.add(name=name)
        if name == "ScaledObjectRef":
            message.nested_type.append(_map_entry("ScalerMetadataEntry"))
        _add_fields(message, fields)
    service = file.service.add(name="ExternalScaler")
    for method, request, response, streaming in _METHODS:
        service.method.add(
            name=method,
            input_type=f".{PACKAGE}.{request}",
            output_type=f".{PACKAGE}.{response}",
            server_streaming=streaming,
        )
    return file


# The field names are the .proto's, hence mixedCase.
class ScaledObjectRefView(Protocol):
    name: str
    namespace: str
    scalerMetadata: Mapping[str, str]  # noqa: N815


class GetMetricsRequestView(Protocol):
    scaledObjectRef: ScaledObjectRefView  # noqa: N815
    metricName: str  # noqa: N815


@dataclass(frozen=True, slots=True)
class ExternalScalerProto:
    """The service descriptor and message classes of one :func:`load`."""

    service: ServiceDescriptor
    ScaledObjectRef: type[Message]
    IsActiveResponse: type[Message]
    GetMetricSpecResponse: type[Message]
    MetricSpec: type[Message]
    GetMetricsRequest: type[Message]
    GetMetricsResponse: type[Message]
    MetricValue: type[Message]

    def read_ref(self, data: bytes) -> ScaledObjectRefView:
        """Parse a ``ScaledObjectRef`` (a request deserializer)."""
        return cast(ScaledObjectRefView, self.ScaledObjectRef.FromString(data))

    def read_metrics_request(self, data: bytes) -> GetMetricsRequestView:
        """Parse a ``GetMetricsRequest`` (a request deserializer)."""
        return cast(GetMetricsRequestView, self.GetMetricsRequest.FromString(data))


def load() -> ExternalScalerProto:
    """Build the message classes in a new descriptor pool."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_descriptor())

    def message(name: str) -> type[Message]:
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))

    return ExternalScalerProto(
        service=pool.FindServiceByName(SERVICE),
        ScaledObjectRef=message("ScaledObjectRef"),
        IsActiveResponse=message("IsActiveResponse"),
        GetMetricSpecResponse=message("GetMetricSpecResponse"),
        MetricSpec=message("MetricSpec"),
        GetMetricsRequest=message("GetMetricsRequest"),
        GetMetricsResponse=message("GetMetricsResponse"),
        MetricValue=message("MetricValue"),
    )
