"""StreamIsActive (KEDA's ``external-push``): the activity at once, then each change."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from tests.polling import eventually
from tests.scaling_keda.conftest import CHANNEL_OPTIONS
from tests.scaling_keda.keda_client import Fleet, KedaClient
from tiergate.scaling.keda import ScalerServer, serve

READ_BOUND_S = 2.0
STREAM_TIMEOUT_S = 20.0


async def next_activity(call: grpc.aio.UnaryStreamCall[object, object]) -> bool:
    reply = await asyncio.wait_for(call.read(), READ_BOUND_S)
    assert reply is not grpc.aio.EOF, f"stream ended: {await call.code()}"
    return bool(reply.result)


@pytest.fixture
async def slow_scaler(fleet: Fleet) -> AsyncIterator[ScalerServer]:
    """A scaler that polls only every 30 s: anything sooner was not a poll."""
    server = await serve(fleet.decide, "127.0.0.1", 0, push_interval_s=30.0)
    yield server
    await server.close(grace_s=1.0)


@pytest.fixture
async def slow_keda(slow_scaler: ScalerServer) -> AsyncIterator[KedaClient]:
    address = f"127.0.0.1:{slow_scaler.port}"
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        yield KedaClient(channel)


async def test_activity_is_pushed_as_soon_as_the_stream_opens(
    fleet: Fleet, slow_keda: KedaClient
) -> None:
    fleet.desired[("llama-70b", None)] = 3
    call = slow_keda.stream_is_active(
        slow_keda.ref(deployment="llama-70b"), timeout=STREAM_TIMEOUT_S
    )
    assert await next_activity(call) is True  # within 2 s, long before the first poll
    call.cancel()


async def test_activation_from_zero_is_pushed_once_per_change(
    fleet: Fleet, keda: KedaClient
) -> None:
    fleet.desired[("llama-70b", None)] = 0
    call = keda.stream_is_active(keda.ref(deployment="llama-70b"), timeout=STREAM_TIMEOUT_S)
    assert await next_activity(call) is False

    fleet.desired[("llama-70b", None)] = 2
    assert await next_activity(call) is True

    fleet.desired[("llama-70b", None)] = 3  # still active: nothing to push
    asked = len(fleet.asked)
    await eventually(lambda: len(fleet.asked) >= asked + 3, what="three more polls")
    fleet.desired[("llama-70b", None)] = 0
    assert await next_activity(call) is False  # the next message, not a repeated True
    call.cancel()


async def test_polling_stops_when_keda_goes_away(fleet: Fleet, keda: KedaClient) -> None:
    fleet.desired[("llama-70b", None)] = 1
    call = keda.stream_is_active(keda.ref(deployment="llama-70b"), timeout=STREAM_TIMEOUT_S)
    assert await next_activity(call) is True
    await eventually(lambda: len(fleet.asked) >= 3, what="polls while the stream is open")

    call.cancel()
    await asyncio.sleep(0.2)  # four poll intervals for the cancellation to reach the server
    asked = len(fleet.asked)
    await asyncio.sleep(0.3)
    assert len(fleet.asked) == asked


async def test_a_failing_poll_keeps_the_stream(fleet: Fleet, keda: KedaClient) -> None:
    fleet.desired[("llama-70b", None)] = 0
    call = keda.stream_is_active(keda.ref(deployment="llama-70b"), timeout=STREAM_TIMEOUT_S)
    assert await next_activity(call) is False

    fleet.failure = RuntimeError("prometheus unreachable")
    asked = len(fleet.asked)
    await eventually(lambda: len(fleet.asked) >= asked + 3, what="three failed polls")
    fleet.failure = None
    fleet.desired[("llama-70b", None)] = 1
    assert await next_activity(call) is True
    call.cancel()


async def test_a_removed_deployment_ends_the_stream(fleet: Fleet, keda: KedaClient) -> None:
    fleet.desired[("llama-70b", None)] = 1
    call = keda.stream_is_active(keda.ref(deployment="llama-70b"), timeout=STREAM_TIMEOUT_S)
    assert await next_activity(call) is True

    del fleet.desired[("llama-70b", None)]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await asyncio.wait_for(call.read(), READ_BOUND_S)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_closing_the_server_ends_open_streams_at_once(
    fleet: Fleet, slow_scaler: ScalerServer, slow_keda: KedaClient
) -> None:
    fleet.desired[("llama-70b", None)] = 1
    call = slow_keda.stream_is_active(
        slow_keda.ref(deployment="llama-70b"), timeout=STREAM_TIMEOUT_S
    )
    assert await next_activity(call) is True

    # The grace is long: only ending the stream, not the grace running out, lets close return.
    await asyncio.wait_for(slow_scaler.close(grace_s=15.0), READ_BOUND_S)
    assert await asyncio.wait_for(call.read(), READ_BOUND_S) is grpc.aio.EOF
    assert await call.code() is grpc.StatusCode.OK
