"""KEDA external scaler: tiergate's replica decisions, served to KEDA over gRPC.

KEDA owns the HorizontalPodAutoscaler of each scaled deployment; tiergate only has to publish
one number per deployment (and role), the replica count its policy wants. How the scaler's
answers become HPA behaviour (KEDA ``pkg/scalers/external_scaler.go`` and the HPA docs):

* ``GetMetricSpec`` → one HPA metric of type External named ``s<trigger>-<metricName>``, target
  ``targetSizeFloat`` (``targetSize`` for KEDA before 2.17). tiergate answers target **1**.
* The trigger's ``metricType`` must stay ``AverageValue`` (KEDA's default). The HPA then divides
  the metric by the current replica count R and compares it with the target:
  ``ceil(R * (desired / R) / 1) = desired``, whatever R is. The HPA so reproduces tiergate's
  decision exactly (the pattern llm-d's WVA uses with ``threshold: '1'``). With ``Value`` it
  would compute ``ceil(R * desired)``: never use it here.
* ``GetMetrics`` → the metric's value: ``metricValueFloat`` (``metricValue`` before 2.17); a 0
  in both reads as 0.
* ``IsActive`` (``desired > 0``) drives only KEDA's own 0↔1 step; ``StreamIsActive`` lets an
  ``external-push`` trigger activate from zero at once instead of at the next
  ``pollingInterval``. It carries activity only, never values.
* ``StreamMetricSpec`` answers UNIMPLEMENTED, which keeps KEDA in pull mode: the target never
  changes, so there is nothing to push.

Two HPA rules still stand between tiergate and the pods: the 0.1 tolerance (no change while
``|desired / R - 1| <= 0.1``, so 10→11 is ignored) and ``behavior`` (a default 300 s
scale-down stabilization). tiergate's policy has its own guards, so the ScaledObject should
set ``behavior`` to pass decisions through (``scaleDown.stabilizationWindowSeconds: 0``, and a
per-direction ``tolerance`` where the cluster supports it).

A ScaledObject names what it scales in its trigger's ``metadata`` (KEDA passes the whole map,
``scalerAddress`` included, as ``scalerMetadata``): ``deployment`` (required) and ``role``
(optional: unified, prefill or decode). The ``decide`` callable maps it to a
:class:`~tiergate.scaling.snapshot.Decision`, or ``None`` when tiergate knows no such
deployment.

gRPC statuses: INVALID_ARGUMENT (bad metadata), NOT_FOUND (unknown deployment or metric name),
UNAVAILABLE (``decide`` failed or took longer than ``decide_timeout_s``), INTERNAL (a negative
decision). KEDA treats each as a failed metric: the HPA then skips scale-down but still scales up
on its other metrics.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, Self

import grpc
from google.protobuf.message import Message

from tiergate.scaling import keda_proto
from tiergate.scaling.keda_proto import GetMetricsRequestView, ScaledObjectRefView
from tiergate.scaling.snapshot import Decision, Role

log = logging.getLogger(__name__)

METRIC_PREFIX = "tiergate-desired-replicas"
TARGET = 1  # see the module docstring: AverageValue over a target of 1 is the decision itself

_Context = grpc.aio.ServicerContext[Any, Any]


@dataclass(frozen=True, slots=True)
class ScaledObject:
    """The ScaledObject KEDA asks about: its name, namespace and trigger metadata.

    Raises ``ValueError`` when ``metadata`` lacks ``deployment`` or has an unknown ``role``.
    """

    name: str
    namespace: str
    metadata: Mapping[str, str] = field(hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))
        where = f"ScaledObject {self.namespace}/{self.name}"
        if not self.metadata.get("deployment", "").strip():
            raise ValueError(
                f"{where}: trigger metadata has no 'deployment' (the tiergate deployment to scale)"
            )
        role = self.metadata.get("role")
        if role is not None and role not in {r.value for r in Role}:
            allowed = ", ".join(r.value for r in Role)
            raise ValueError(f"{where}: trigger metadata 'role' is {role!r}, not one of {allowed}")

    @property
    def deployment(self) -> str:
        return self.metadata["deployment"].strip()

    @property
    def role(self) -> Role | None:
        role = self.metadata.get("role")
        return None if role is None else Role(role)

    @property
    def metric_name(self) -> str:
        """``tiergate-desired-replicas-<deployment>[-<role>]``, lower case, ``[a-z0-9-]`` only."""
        parts = [METRIC_PREFIX, self.deployment] + ([self.role.value] if self.role else [])
        return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")


Decide = Callable[[ScaledObject], Awaitable[Decision | None]]


@dataclass(frozen=True, slots=True)
class _Failure:
    code: grpc.StatusCode
    message: str


class ExternalScaler:
    """The ``externalscaler.ExternalScaler`` service over a ``decide`` callable.

    ``push_interval_s`` is how often an open ``StreamIsActive`` calls ``decide`` to see whether
    the activity changed; each call of ``decide`` may take at most ``decide_timeout_s``.
    """

    def __init__(
        self, decide: Decide, *, push_interval_s: float = 2.0, decide_timeout_s: float = 5.0
    ) -> None:
        if not 0 < push_interval_s <= 60:
            raise ValueError(f"push_interval_s must be in (0, 60], not {push_interval_s}")
        if not decide_timeout_s > 0:
            raise ValueError(f"decide_timeout_s must be positive, not {decide_timeout_s}")
        self._decide = decide
        self._push_interval_s = push_interval_s
        self._decide_timeout_s = decide_timeout_s
        self._proto = keda_proto.load()
        self._stopping = asyncio.Event()

    def handler(self) -> grpc.GenericRpcHandler:
        """The generic handler to add to a ``grpc.aio`` server."""
        proto = self._proto
        ref = proto.read_ref
        return grpc.method_handlers_generic_handler(
            keda_proto.SERVICE,
            {
                "IsActive": grpc.unary_unary_rpc_method_handler(
                    self.is_active, ref, proto.IsActiveResponse.SerializeToString
                ),
                "StreamIsActive": grpc.unary_stream_rpc_method_handler(
                    self.stream_is_active, ref, proto.IsActiveResponse.SerializeToString
                ),
                "GetMetricSpec": grpc.unary_unary_rpc_method_handler(
                    self.get_metric_spec, ref, proto.GetMetricSpecResponse.SerializeToString
                ),
                "GetMetrics": grpc.unary_unary_rpc_method_handler(
                    self.get_metrics,
                    proto.read_metrics_request,
                    proto.GetMetricsResponse.SerializeToString,
                ),
                "StreamMetricSpec": grpc.unary_stream_rpc_method_handler(
                    self.stream_metric_spec, ref, proto.GetMetricSpecResponse.SerializeToString
                ),
            },
        )

    def stop_streams(self) -> None:
        """End every open ``StreamIsActive`` (with OK): KEDA reconnects, to another replica."""
        self._stopping.set()

    async def is_active(self, request: ScaledObjectRefView, context: _Context) -> Message:
        decision = await self._decide_or_abort(await _scaled_object(request, context), context)
        return self._proto.IsActiveResponse(result=decision.desired > 0)

    async def stream_is_active(
        self, request: ScaledObjectRefView, context: _Context
    ) -> AsyncIterator[Message]:
        """Send the activity at once, then each change seen by polling ``decide``.

        A failing poll keeps the last value (KEDA would otherwise reconnect with a backoff of up
        to a minute); a deployment that disappeared ends the stream with NOT_FOUND. When the
        client goes away gRPC cancels this generator.
        """
        target = await _scaled_object(request, context)
        active = (await self._decide_or_abort(target, context)).desired > 0
        yield self._proto.IsActiveResponse(result=active)
        while not await self._stopping_within(self._push_interval_s):
            outcome = await self._try_decide(target)
            if isinstance(outcome, _Failure):
                if outcome.code is grpc.StatusCode.NOT_FOUND:
                    await context.abort(outcome.code, outcome.message)
                log.warning("StreamIsActive keeps active=%s: %s", active, outcome.message)
                continue
            if (outcome.desired > 0) != active:
                active = not active
                yield self._proto.IsActiveResponse(result=active)

    async def get_metric_spec(self, request: ScaledObjectRefView, context: _Context) -> Message:
        target = await _scaled_object(request, context)
        await self._decide_or_abort(target, context)  # an unknown deployment gets no HPA metric
        spec = self._proto.MetricSpec(
            metricName=target.metric_name, targetSize=TARGET, targetSizeFloat=float(TARGET)
        )
        return self._proto.GetMetricSpecResponse(metricSpecs=[spec])

    async def get_metrics(self, request: GetMetricsRequestView, context: _Context) -> Message:
        target = await _scaled_object(request.scaledObjectRef, context)
        if not _names_metric(request.metricName, target.metric_name):
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"no metric {request.metricName!r} for ScaledObject "
                f"{target.namespace}/{target.name}: its metric is {target.metric_name!r}",
            )
        desired = (await self._decide_or_abort(target, context)).desired
        value = self._proto.MetricValue(
            metricName=target.metric_name, metricValue=desired, metricValueFloat=float(desired)
        )
        return self._proto.GetMetricsResponse(metricValues=[value])

    async def stream_metric_spec(self, request: ScaledObjectRefView, context: _Context) -> None:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "tiergate's metric target is fixed; GetMetricSpec (pull mode) is enough",
        )

    async def _stopping_within(self, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        except TimeoutError:
            return False
        return True

    async def _decide_or_abort(self, target: ScaledObject, context: _Context) -> Decision:
        outcome = await self._try_decide(target)
        if isinstance(outcome, _Failure):
            await context.abort(outcome.code, outcome.message)
        return outcome

    async def _try_decide(self, target: ScaledObject) -> Decision | _Failure:
        """Ask ``decide``; every way it can fail becomes the status KEDA gets."""
        what = f"deployment {target.deployment!r}" + (
            f" role {target.role.value!r}" if target.role else ""
        )
        try:
            async with asyncio.timeout(self._decide_timeout_s):
                decision = await self._decide(target)
        except TimeoutError:
            return _Failure(
                grpc.StatusCode.UNAVAILABLE,
                f"tiergate did not decide for {what} within {self._decide_timeout_s} s",
            )
        except Exception:  # the scaler's edge: any policy failure is a failed metric
            log.exception("decide failed for %s", what)
            return _Failure(grpc.StatusCode.UNAVAILABLE, f"tiergate failed to decide for {what}")
        if decision is None:
            return _Failure(
                grpc.StatusCode.NOT_FOUND,
                f"tiergate scales no {what} (ScaledObject {target.namespace}/{target.name})",
            )
        if decision.desired < 0:
            return _Failure(
                grpc.StatusCode.INTERNAL,
                f"tiergate decided {decision.desired} replicas for {what} ({decision.reason})",
            )
        return decision


async def _scaled_object(ref: ScaledObjectRefView, context: _Context) -> ScaledObject:
    try:
        return ScaledObject(ref.name, ref.namespace, dict(ref.scalerMetadata))
    except ValueError as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))


def _names_metric(asked: str, metric_name: str) -> bool:
    # KEDA strips its "s<trigger>-" prefix before asking; a prefixed name is accepted too.
    return (
        asked == metric_name or re.fullmatch(rf"s\d+-{re.escape(metric_name)}", asked) is not None
    )


class ScalerServer:
    """A running external scaler (from :func:`serve`): ``port``, ``close``, ``async with``."""

    def __init__(self, scaler: ExternalScaler, server: grpc.aio.Server, port: int) -> None:
        self.scaler = scaler
        self.port = port
        self._server = server

    async def close(self, grace_s: float = 5.0) -> None:
        """Refuse new calls, end open streams, wait up to ``grace_s`` for calls in flight."""
        self.scaler.stop_streams()
        await self._server.stop(grace_s)

    async def wait_closed(self) -> None:
        await self._server.wait_for_termination()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def serve(
    decide: Decide,
    host: str,
    port: int,
    *,
    push_interval_s: float = 2.0,
    decide_timeout_s: float = 5.0,
) -> ScalerServer:
    """Serve the external scaler on ``host:port`` (port 0: a free one, see ``.port``).

    Raises ``OSError`` when the address cannot be bound (it is not shared with another server).
    """
    scaler = ExternalScaler(
        decide, push_interval_s=push_interval_s, decide_timeout_s=decide_timeout_s
    )
    # gRPC shares ports by default (SO_REUSEPORT): a second scaler on a taken port must fail.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers([scaler.handler()])
    address = f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {address}: {exc}") from exc
    if bound == 0:  # older grpcio reports a failed bind by returning 0
        raise OSError(f"cannot listen on {address}")
    await server.start()
    return ScalerServer(scaler, server, bound)
