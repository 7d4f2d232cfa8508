"""Settings of the HPA baseline: KEDA Prometheus triggers, ``spec.behavior``, bounds.

Mirrors the Kubernetes autoscaling/v2 and KEDA ScaledObject fields with their defaults and
API limits (KEDA's ScaledObject spec and the Kubernetes HPA docs);
:mod:`~tiergate.scaling.policy_hpa` computes with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tiergate.scaling.policy_base import FRACTION_SIGNALS, PER_REPLICA_SIGNALS, Aggregation, Signal

MetricType = Literal["AverageValue", "Value"]
ScalingPolicyType = Literal["Pods", "Percent"]
SelectPolicy = Literal["Max", "Min", "Disabled"]

MAX_PERIOD_S = 1800  # HPAScalingPolicy.periodSeconds upper limit
MAX_STABILIZATION_S = 3600  # HPAScalingRules.stabilizationWindowSeconds upper limit
DEFAULT_TOLERANCE = 0.1  # --horizontal-pod-autoscaler-tolerance


@dataclass(frozen=True, slots=True)
class HpaScalingPolicy:
    """One ``behavior.scaleUp/scaleDown.policies`` entry: change by ``value`` pods or percent
    per ``period_s`` seconds."""

    type: ScalingPolicyType
    value: int
    period_s: int

    def __post_init__(self) -> None:
        if self.type not in ("Pods", "Percent"):
            raise ValueError(f"scaling policy type must be Pods or Percent, not {self.type!r}")
        if self.value <= 0:
            raise ValueError(f"scaling policy value must be > 0, not {self.value}")
        if not 0 < self.period_s <= MAX_PERIOD_S:
            raise ValueError(f"periodSeconds must be in (0, {MAX_PERIOD_S}], not {self.period_s}")


@dataclass(frozen=True, slots=True)
class HpaScalingRules:
    """``behavior.scaleUp`` or ``behavior.scaleDown``."""

    stabilization_window_s: int
    policies: tuple[HpaScalingPolicy, ...]
    select_policy: SelectPolicy = "Max"

    def __post_init__(self) -> None:
        if not 0 <= self.stabilization_window_s <= MAX_STABILIZATION_S:
            raise ValueError(
                f"stabilizationWindowSeconds must be in [0, {MAX_STABILIZATION_S}], "
                f"not {self.stabilization_window_s}"
            )
        if self.select_policy not in ("Max", "Min", "Disabled"):
            raise ValueError(f"selectPolicy must be Max, Min or Disabled: {self.select_policy!r}")
        if not self.policies and self.select_policy != "Disabled":
            raise ValueError("scaling rules need at least one policy unless selectPolicy=Disabled")

    @property
    def longest_period_s(self) -> int:
        """The longest policy period: scale events older than this no longer matter."""
        return max((policy.period_s for policy in self.policies), default=0)


# The HPA's documented defaults (autoscaling/v2 behavior).
DEFAULT_SCALE_UP = HpaScalingRules(
    stabilization_window_s=0,
    policies=(HpaScalingPolicy("Percent", 100, 15), HpaScalingPolicy("Pods", 4, 15)),
    select_policy="Max",
)
DEFAULT_SCALE_DOWN = HpaScalingRules(
    stabilization_window_s=300, policies=(HpaScalingPolicy("Percent", 100, 15),)
)


@dataclass(frozen=True, slots=True)
class HpaBehavior:
    """``spec.behavior`` (KEDA: ``advanced.horizontalPodAutoscalerConfig.behavior``)."""

    scale_up: HpaScalingRules = DEFAULT_SCALE_UP
    scale_down: HpaScalingRules = DEFAULT_SCALE_DOWN


@dataclass(frozen=True, slots=True)
class HpaTrigger:
    """One KEDA Prometheus trigger: a query over ``signal`` and the HPA target ``threshold``.

    ``query_aggregation`` is the PromQL aggregation over replicas (``sum(vllm:...)``,
    ``avg(...)``, ``max(...)``) for per-replica signals. ``null_as_zero`` is KEDA's
    ``ignoreNullValues`` (default true: an empty or NaN result reads as 0); false makes an
    empty result an error, which the HPA treats as an unavailable metric.

    No check on ``threshold`` against the signal's unit: the baseline reproduces the seed's
    ``threshold: "80"`` on a 0-1 gauge as KEDA would (see :attr:`threshold_is_percentage`).
    """

    signal: Signal
    threshold: float
    metric_type: MetricType = "AverageValue"
    query_aggregation: Aggregation = "sum"
    null_as_zero: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "signal", Signal(self.signal))
        if not self.threshold > 0:
            raise ValueError(f"trigger threshold must be > 0, not {self.threshold}")
        if self.metric_type not in ("AverageValue", "Value"):
            raise ValueError(
                f"metricType must be AverageValue or Value for external metrics, "
                f"not {self.metric_type!r}"
            )
        if self.query_aggregation not in ("sum", "avg", "max"):
            raise ValueError(f"query aggregation must be sum, avg or max: {self.query_aggregation}")

    @property
    def label(self) -> str:
        """The query in short, e.g. ``sum(waiting)``."""
        if self.signal in PER_REPLICA_SIGNALS:
            return f"{self.query_aggregation}({self.signal})"
        return str(self.signal)

    @property
    def threshold_is_percentage(self) -> bool:
        """True for a threshold above 1 on a 0-1 gauge: it can never be reached."""
        return self.signal in FRACTION_SIGNALS and self.threshold > 1


@dataclass(frozen=True, slots=True)
class HpaExternalMetric:
    """An HPA metric of type External, ``AverageValue`` over ``target``, whose value the caller
    passes to each :meth:`~tiergate.scaling.policy_hpa.HpaPolicy.decide`: a KEDA cron trigger
    (``desiredReplicas`` inside its window, else 1, over a target of 1; KEDA's
    ``cron_scaler.go``) or tiergate's external scaler (the desired count over a target of 1)."""

    name: str
    target: float = 1.0

    def __post_init__(self) -> None:
        if not self.target > 0:
            raise ValueError(f"external metric target must be > 0, not {self.target}")


@dataclass(frozen=True, slots=True)
class HpaSettings:
    """A ScaledObject's triggers, replica bounds, behaviour and the HPA tolerance.

    ``min_replicas`` ≥ 1: scaling between 0 and 1 is KEDA's activation, not the HPA's.
    ``external_metrics``: metrics besides the Prometheus triggers, valued by the caller.
    """

    triggers: tuple[HpaTrigger, ...]
    min_replicas: int = 1
    max_replicas: int = 100  # KEDA's maxReplicaCount default
    behavior: HpaBehavior = field(default_factory=HpaBehavior)
    tolerance: float = DEFAULT_TOLERANCE
    external_metrics: tuple[HpaExternalMetric, ...] = ()

    def __post_init__(self) -> None:
        if not self.triggers and not self.external_metrics:
            raise ValueError("an HPA needs at least one trigger")
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError(
                f"need 1 <= min_replicas <= max_replicas, got {self.min_replicas}, "
                f"{self.max_replicas}"
            )
        if not 0 <= self.tolerance < 1:
            raise ValueError(f"tolerance must be in [0, 1), not {self.tolerance}")


def seed_hpa_settings() -> HpaSettings:
    """The seed's ScaledObject as written: three triggers, default ``AverageValue``, min 2,
    max 8. Traps included on purpose: ``avg(kv) / 80`` (a 0-1 gauge against a percentage,
    then divided by replicas again) and TTFT seconds averaged per replica."""
    return HpaSettings(
        triggers=(
            HpaTrigger(Signal.KV_USAGE, 80, "AverageValue", "avg"),
            HpaTrigger(Signal.WAITING, 10, "AverageValue", "sum"),
            HpaTrigger(Signal.TTFT_P95, 2, "AverageValue"),
        ),
        min_replicas=2,
        max_replicas=8,
    )


def corrected_seed_hpa_settings() -> HpaSettings:
    """The seed's intent in correct units: KV 0.8 of the fraction and TTFT 2 s as ``Value``
    (scale with the ratio to the target), waiting 10 per replica as ``AverageValue``."""
    return HpaSettings(
        triggers=(
            HpaTrigger(Signal.KV_USAGE, 0.8, "Value", "avg"),
            HpaTrigger(Signal.WAITING, 10, "AverageValue", "sum"),
            HpaTrigger(Signal.TTFT_P95, 2, "Value"),
        ),
        min_replicas=2,
        max_replicas=8,
    )
