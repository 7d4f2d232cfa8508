"""The scaler answers KEDA's unary calls: metric spec, metric values, activity, errors."""

from __future__ import annotations

import math

import grpc
import pytest

from tests.scaling_keda.conftest import CHANNEL_OPTIONS
from tests.scaling_keda.keda_client import CALL_TIMEOUT_S, Fleet, KedaClient
from tiergate.scaling.keda import ExternalScaler, ScalerServer, serve
from tiergate.scaling.snapshot import Role


async def test_metric_spec_names_the_deployment_with_a_target_of_one(
    fleet: Fleet, keda: KedaClient
) -> None:
    fleet.desired[("llama-70b", None)] = 3
    reply = await keda.get_metric_spec(keda.ref(deployment="llama-70b"), timeout=CALL_TIMEOUT_S)

    [spec] = reply.metricSpecs
    assert spec.metricName == "tiergate-desired-replicas-llama-70b"
    assert spec.targetSizeFloat == 1.0
    assert isinstance(spec.targetSizeFloat, float)
    assert spec.targetSize == 1  # for KEDA before 2.17


@pytest.mark.parametrize(
    ("deployment", "role", "metric_name"),
    [
        ("llama-70b", "prefill", "tiergate-desired-replicas-llama-70b-prefill"),
        ("llama-70b", "decode", "tiergate-desired-replicas-llama-70b-decode"),
        ("Llama_3.1:70B", None, "tiergate-desired-replicas-llama-3-1-70b"),
    ],
)
async def test_metric_name_has_the_role_and_only_safe_characters(
    fleet: Fleet, keda: KedaClient, deployment: str, role: str | None, metric_name: str
) -> None:
    fleet.desired[(deployment, None if role is None else Role(role))] = 1
    metadata = {"deployment": deployment} | ({"role": role} if role else {})
    reply = await keda.get_metric_spec(keda.ref(**metadata), timeout=CALL_TIMEOUT_S)
    assert [spec.metricName for spec in reply.metricSpecs] == [metric_name]


async def test_metrics_are_the_desired_replicas_as_int_and_float(
    fleet: Fleet, keda: KedaClient
) -> None:
    fleet.desired[("llama-70b", Role.DECODE)] = 7
    ref = keda.ref(deployment="llama-70b", role="decode")
    name = "tiergate-desired-replicas-llama-70b-decode"

    reply = await keda.get_metrics(keda.metrics_request(ref, name), timeout=CALL_TIMEOUT_S)

    [value] = reply.metricValues
    assert value.metricName == name
    assert value.metricValue == 7
    assert value.metricValueFloat == 7.0
    assert isinstance(value.metricValueFloat, float)
    assert [target.namespace for target in fleet.asked] == ["serving"]
    assert fleet.asked[0].metadata["scalerAddress"]  # the whole trigger metadata reaches decide


async def test_the_hpa_scales_to_exactly_the_decision(fleet: Fleet, keda: KedaClient) -> None:
    """External + AverageValue: ceil(R x (value / R) / target), for any current count R."""
    fleet.desired[("llama-70b", None)] = 1
    ref = keda.ref(deployment="llama-70b")
    spec = (await keda.get_metric_spec(ref, timeout=CALL_TIMEOUT_S)).metricSpecs[0]
    for desired in (1, 2, 5, 13, 40):
        fleet.desired[("llama-70b", None)] = desired
        request = keda.metrics_request(ref, spec.metricName)
        value = (await keda.get_metrics(request, timeout=CALL_TIMEOUT_S)).metricValues[0]
        for current in (1, 3, 8, 50):
            per_pod = value.metricValueFloat / current
            assert math.ceil(round(current * per_pod / spec.targetSizeFloat, 9)) == desired


async def test_zero_replicas_is_a_zero_metric_and_inactive(fleet: Fleet, keda: KedaClient) -> None:
    fleet.desired[("llama-70b", None)] = 0
    ref = keda.ref(deployment="llama-70b")
    request = keda.metrics_request(ref, "tiergate-desired-replicas-llama-70b")

    [value] = (await keda.get_metrics(request, timeout=CALL_TIMEOUT_S)).metricValues
    assert (value.metricValue, value.metricValueFloat) == (0, 0.0)
    assert (await keda.is_active(ref, timeout=CALL_TIMEOUT_S)).result is False


async def test_is_active_when_any_replica_is_wanted(fleet: Fleet, keda: KedaClient) -> None:
    fleet.desired[("llama-70b", None)] = 2
    assert (await keda.is_active(keda.ref(deployment="llama-70b"), timeout=CALL_TIMEOUT_S)).result


async def test_a_prefixed_metric_name_is_accepted(fleet: Fleet, keda: KedaClient) -> None:
    fleet.desired[("llama-70b", None)] = 4
    request = keda.metrics_request(
        keda.ref(deployment="llama-70b"), "s0-tiergate-desired-replicas-llama-70b"
    )
    [value] = (await keda.get_metrics(request, timeout=CALL_TIMEOUT_S)).metricValues
    assert value.metricValue == 4


async def call_as_keda(keda: KedaClient, method: str, ref: object) -> None:
    """Call ``method`` for ``ref`` as KEDA would, reading a stream to its end."""
    if method == "GetMetrics":
        request = keda.metrics_request(ref, "tiergate-desired-replicas-llama-70b")
        await keda.get_metrics(request, timeout=CALL_TIMEOUT_S)
    elif method == "StreamIsActive":
        async for _ in keda.stream_is_active(ref, timeout=CALL_TIMEOUT_S):
            pass
    else:
        call = keda.is_active if method == "IsActive" else keda.get_metric_spec
        await call(ref, timeout=CALL_TIMEOUT_S)


async def rpc_error(keda: KedaClient, method: str, ref: object) -> grpc.aio.AioRpcError:
    """The error that ``method`` must fail with for ``ref``."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call_as_keda(keda, method, ref)
    return caught.value


METHODS = ["IsActive", "StreamIsActive", "GetMetricSpec", "GetMetrics"]


@pytest.mark.parametrize("method", METHODS)
async def test_missing_deployment_is_an_invalid_argument(keda: KedaClient, method: str) -> None:
    error = await rpc_error(keda, method, keda.ref(name="chat", namespace="prod", role="decode"))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == (
        "ScaledObject prod/chat: trigger metadata has no 'deployment' "
        "(the tiergate deployment to scale)"
    )


async def test_unknown_role_is_an_invalid_argument(keda: KedaClient) -> None:
    error = await rpc_error(keda, "IsActive", keda.ref(deployment="llama-70b", role="encode"))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "'encode', not one of unified, prefill, decode" in (error.details() or "")


@pytest.mark.parametrize("method", METHODS)
async def test_unknown_deployment_is_not_found(fleet: Fleet, keda: KedaClient, method: str) -> None:
    fleet.desired[("llama-70b", Role.PREFILL)] = 1  # another role of the same deployment
    error = await rpc_error(keda, method, keda.ref(deployment="llama-70b"))
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert error.details() == (
        "tiergate scales no deployment 'llama-70b' (ScaledObject serving/llama)"
    )


async def test_unknown_metric_name_is_not_found(fleet: Fleet, keda: KedaClient) -> None:
    fleet.desired[("llama-70b", None)] = 1
    request = keda.metrics_request(keda.ref(deployment="llama-70b"), "vllm-num-requests-waiting")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await keda.get_metrics(request, timeout=CALL_TIMEOUT_S)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert "its metric is 'tiergate-desired-replicas-llama-70b'" in (caught.value.details() or "")
    assert fleet.asked == []  # answered before the policy was asked


async def test_failing_or_slow_decide_is_unavailable(fleet: Fleet, keda: KedaClient) -> None:
    fleet.desired[("llama-70b", None)] = 1
    fleet.failure = RuntimeError("signals down")
    error = await rpc_error(keda, "IsActive", keda.ref(deployment="llama-70b"))
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert error.details() == "tiergate failed to decide for deployment 'llama-70b'"

    fleet.failure, fleet.delay_s = None, 5.0  # the scaler's decide_timeout_s is 0.5
    error = await rpc_error(keda, "GetMetricSpec", keda.ref(deployment="llama-70b"))
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert error.details() == "tiergate did not decide for deployment 'llama-70b' within 0.5 s"


async def test_negative_decision_is_an_internal_error(fleet: Fleet, keda: KedaClient) -> None:
    fleet.desired[("llama-70b", None)] = -1
    error = await rpc_error(keda, "GetMetrics", keda.ref(deployment="llama-70b"))
    assert error.code() is grpc.StatusCode.INTERNAL


async def test_stream_metric_spec_is_unimplemented(keda: KedaClient) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in keda.stream_metric_spec(keda.ref(deployment="x"), timeout=CALL_TIMEOUT_S):
            pass
    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED


async def test_a_taken_port_is_refused(fleet: Fleet, scaler: ScalerServer) -> None:
    with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{scaler.port}"):
        await serve(fleet.decide, "127.0.0.1", scaler.port)


async def test_the_handle_serves_until_closed(fleet: Fleet) -> None:
    fleet.desired[("llama-70b", None)] = 1
    async with await serve(fleet.decide, "127.0.0.1", 0) as server:
        assert server.port > 0
        address = f"127.0.0.1:{server.port}"
        async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
            keda = KedaClient(channel)
            ref = keda.ref(deployment="llama-70b")
            assert (await keda.is_active(ref, timeout=CALL_TIMEOUT_S)).result
    await server.wait_closed()  # returns at once: the server has stopped


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"push_interval_s": 0.0}, "push_interval_s must be in"),
        ({"push_interval_s": 600.0}, "push_interval_s must be in"),
        ({"decide_timeout_s": 0.0}, "decide_timeout_s must be positive"),
    ],
)
def test_scaler_options_are_checked(fleet: Fleet, options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ExternalScaler(fleet.decide, **options)
