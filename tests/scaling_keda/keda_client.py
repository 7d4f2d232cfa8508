"""What the KEDA tests play: KEDA's gRPC client, a fleet of decisions, protobuf by hand.

``KedaClient`` calls the scaler the way KEDA's ``external_scaler.go`` does, with message
classes built from the same descriptor definitions in a pool of its own. ``Fleet`` is the
``decide`` callable: the replica counts the test sets, and every ScaledObject it was asked
about. The wire helpers encode and decode protobuf by field number and wire type, without
the descriptors, so that the numbers are checked rather than assumed.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field
from typing import Any

import grpc

from tiergate.scaling import keda_proto
from tiergate.scaling.keda import ScaledObject
from tiergate.scaling.snapshot import Decision, Role

CALL_TIMEOUT_S = 5.0
SERVICE_PATH = f"/{keda_proto.SERVICE}"
# KEDA passes the whole trigger metadata, its own scalerAddress included.
SCALER_ADDRESS = "tiergate-scaler.tiergate.svc:9090"


@dataclass
class Fleet:
    """The decisions tiergate would make: ``(deployment, role) -> desired replicas``."""

    desired: dict[tuple[str, Role | None], int] = field(default_factory=dict)
    asked: list[ScaledObject] = field(default_factory=list)
    delay_s: float = 0.0
    failure: Exception | None = None

    async def decide(self, target: ScaledObject) -> Decision | None:
        self.asked.append(target)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.failure is not None:
            raise self.failure
        desired = self.desired.get((target.deployment, target.role))
        return None if desired is None else Decision(target.deployment, desired, reason="test")


class KedaClient:
    """KEDA's side of ``externalscaler.ExternalScaler``, over one ``grpc.aio`` channel."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.proto = proto = keda_proto.load()
        ref = proto.ScaledObjectRef.SerializeToString
        self.is_active = channel.unary_unary(
            f"{SERVICE_PATH}/IsActive", ref, proto.IsActiveResponse.FromString
        )
        self.stream_is_active = channel.unary_stream(
            f"{SERVICE_PATH}/StreamIsActive", ref, proto.IsActiveResponse.FromString
        )
        self.get_metric_spec = channel.unary_unary(
            f"{SERVICE_PATH}/GetMetricSpec", ref, proto.GetMetricSpecResponse.FromString
        )
        self.get_metrics = channel.unary_unary(
            f"{SERVICE_PATH}/GetMetrics",
            proto.GetMetricsRequest.SerializeToString,
            proto.GetMetricsResponse.FromString,
        )
        self.stream_metric_spec = channel.unary_stream(
            f"{SERVICE_PATH}/StreamMetricSpec", ref, proto.GetMetricSpecResponse.FromString
        )
        self._channel = channel

    def raw(self, method: str) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
        """``method`` without serializers: bytes in, bytes out, for the hand-encoded tests."""
        return self._channel.unary_unary(f"{SERVICE_PATH}/{method}")

    def ref(self, name: str = "llama", namespace: str = "serving", **metadata: str) -> Any:
        """A ``ScaledObjectRef`` as KEDA sends it for a trigger with ``metadata``."""
        return self.proto.ScaledObjectRef(
            name=name,
            namespace=namespace,
            scalerMetadata={"scalerAddress": SCALER_ADDRESS, **metadata},
        )

    def metrics_request(self, ref: Any, metric_name: str) -> Any:
        return self.proto.GetMetricsRequest(scaledObjectRef=ref, metricName=metric_name)


# --- protobuf wire format by hand (https://protobuf.dev/programming-guides/encoding/) ---

VARINT, I64, LEN = 0, 1, 2


def varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # negative int64 are ten bytes of two's complement
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def length_delimited(number: int, payload: bytes) -> bytes:
    return tag(number, LEN) + varint(len(payload)) + payload


def string(number: int, text: str) -> bytes:
    return length_delimited(number, text.encode())


def decode(data: bytes) -> list[tuple[int, int, int | bytes]]:
    """``(field number, wire type, value)`` in order; I64 values are the 8 raw bytes."""
    fields: list[tuple[int, int, int | bytes]] = []
    pos = 0

    def read_varint() -> int:
        nonlocal pos
        result = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    while pos < len(data):
        key = read_varint()
        number, wire_type = key >> 3, key & 7
        value: int | bytes
        if wire_type == VARINT:
            value = read_varint()
        elif wire_type == I64:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire_type == LEN:
            size = read_varint()
            value, pos = data[pos : pos + size], pos + size
        else:
            raise AssertionError(f"unexpected wire type {wire_type} for field {number}")
        fields.append((number, wire_type, value))
    return fields


def double(raw: int | bytes) -> float:
    assert isinstance(raw, bytes)
    return float(struct.unpack("<d", raw)[0])
