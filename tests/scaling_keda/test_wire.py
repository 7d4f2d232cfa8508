"""The field numbers and wire types are KEDA's: checked on bytes encoded and decoded by hand.

The expected values are the reference's ``externalscaler.proto`` table, written out here,
not read from tiergate's descriptor.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FieldDescriptor

from tests.scaling_keda.keda_client import (
    CALL_TIMEOUT_S,
    I64,
    LEN,
    VARINT,
    Fleet,
    KedaClient,
    decode,
    double,
    length_delimited,
    string,
)
from tiergate.scaling import keda_proto


def map_entry(number: int, key: str, value: str) -> bytes:
    """One ``map<string, string>`` entry: a nested message of key = 1, value = 2."""
    return length_delimited(number, string(1, key) + string(2, value))


def scaled_object_ref(name: str, namespace: str, metadata: dict[str, str]) -> bytes:
    """``ScaledObjectRef``: name = 1, namespace = 2, scalerMetadata = 3 (map<string,string>)."""
    entries = b"".join(map_entry(3, key, value) for key, value in metadata.items())
    return string(1, name) + string(2, namespace) + entries


def test_a_hand_encoded_scaled_object_ref_parses() -> None:
    proto = keda_proto.load()
    data = scaled_object_ref("chat", "prod", {"deployment": "llama-70b", "role": "decode"})

    ref = proto.read_ref(data)

    assert (ref.name, ref.namespace) == ("chat", "prod")
    assert dict(ref.scalerMetadata) == {"deployment": "llama-70b", "role": "decode"}


async def test_the_server_answers_hand_encoded_bytes(fleet: Fleet, keda: KedaClient) -> None:
    fleet.desired[("llama-70b", None)] = 300  # a two-byte varint
    ref = scaled_object_ref("chat", "prod", {"deployment": "llama-70b"})
    name = "tiergate-desired-replicas-llama-70b"

    # GetMetricsRequest: scaledObjectRef = 1 (message), metricName = 2 (string)
    request = length_delimited(1, ref) + string(2, name)
    reply = await keda.raw("GetMetrics")(request, timeout=CALL_TIMEOUT_S)
    # GetMetricsResponse: metricValues = 1 (repeated MetricValue)
    [(number, wire_type, value)] = decode(reply)
    assert (number, wire_type) == (1, LEN)
    assert isinstance(value, bytes)
    # MetricValue: metricName = 1 (string), metricValue = 2 (int64), metricValueFloat = 3 (double)
    fields = decode(value)
    assert fields[:2] == [(1, LEN, name.encode()), (2, VARINT, 300)]
    assert fields[2][:2] == (3, I64)
    assert double(fields[2][2]) == 300.0

    # GetMetricSpecResponse: metricSpecs = 1 (repeated MetricSpec)
    reply = await keda.raw("GetMetricSpec")(ref, timeout=CALL_TIMEOUT_S)
    [(number, wire_type, spec)] = decode(reply)
    assert (number, wire_type) == (1, LEN)
    assert isinstance(spec, bytes)
    # MetricSpec: metricName = 1 (string), targetSize = 2 (int64), targetSizeFloat = 3 (double)
    fields = decode(spec)
    assert fields[:2] == [(1, LEN, name.encode()), (2, VARINT, 1)]
    assert fields[2][:2] == (3, I64)
    assert double(fields[2][2]) == 1.0

    # IsActiveResponse: result = 1 (bool)
    assert decode(await keda.raw("IsActive")(ref, timeout=CALL_TIMEOUT_S)) == [(1, VARINT, 1)]


F = FieldDescriptor
REFERENCE = {
    "ScaledObjectRef": [
        ("name", 1, F.TYPE_STRING, False),
        ("namespace", 2, F.TYPE_STRING, False),
        ("scalerMetadata", 3, F.TYPE_MESSAGE, True),
    ],
    "IsActiveResponse": [("result", 1, F.TYPE_BOOL, False)],
    "GetMetricSpecResponse": [("metricSpecs", 1, F.TYPE_MESSAGE, True)],
    "MetricSpec": [
        ("metricName", 1, F.TYPE_STRING, False),
        ("targetSize", 2, F.TYPE_INT64, False),
        ("targetSizeFloat", 3, F.TYPE_DOUBLE, False),
    ],
    "GetMetricsRequest": [
        ("scaledObjectRef", 1, F.TYPE_MESSAGE, False),
        ("metricName", 2, F.TYPE_STRING, False),
    ],
    "GetMetricsResponse": [("metricValues", 1, F.TYPE_MESSAGE, True)],
    "MetricValue": [
        ("metricName", 1, F.TYPE_STRING, False),
        ("metricValue", 2, F.TYPE_INT64, False),
        ("metricValueFloat", 3, F.TYPE_DOUBLE, False),
    ],
}


def test_the_descriptor_is_the_reference_proto() -> None:
    proto = keda_proto.load()
    for message, fields in REFERENCE.items():
        descriptor = getattr(proto, message).DESCRIPTOR
        assert descriptor.full_name == f"externalscaler.{message}"
        assert [(f.name, f.number, f.type, f.is_repeated) for f in descriptor.fields] == fields, (
            message
        )

    metadata = proto.ScaledObjectRef.DESCRIPTOR.fields_by_name["scalerMetadata"]
    assert metadata.message_type.GetOptions().map_entry
    assert [(f.name, f.number, f.type) for f in metadata.message_type.fields] == [
        ("key", 1, F.TYPE_STRING),
        ("value", 2, F.TYPE_STRING),
    ]
    assert proto.ScaledObjectRef(scalerMetadata={"a": "b"}).scalerMetadata["a"] == "b"

    methods = {
        m.name: (m.input_type.name, m.output_type.name, m.server_streaming)
        for m in proto.service.methods
    }
    assert methods == {
        "IsActive": ("ScaledObjectRef", "IsActiveResponse", False),
        "StreamIsActive": ("ScaledObjectRef", "IsActiveResponse", True),
        "GetMetricSpec": ("ScaledObjectRef", "GetMetricSpecResponse", False),
        "GetMetrics": ("GetMetricsRequest", "GetMetricsResponse", False),
        "StreamMetricSpec": ("ScaledObjectRef", "GetMetricSpecResponse", True),
    }
    assert proto.service.full_name == "externalscaler.ExternalScaler"
    file = descriptor_pb2.FileDescriptorProto()
    proto.service.file.CopyToProto(file)
    assert (file.name, file.package, file.syntax) == (
        "externalscaler.proto",
        "externalscaler",
        "proto3",
    )
    assert proto.IsActiveResponse(result=False).SerializeToString() == b""  # proto3 defaults
