"""The HPA baseline: KEDA trigger semantics and the HPA algorithm, case by case."""

from __future__ import annotations

import pytest

from tiergate.scaling.policy import (
    HpaBehavior,
    HpaPolicy,
    HpaScalingPolicy,
    HpaScalingRules,
    HpaSettings,
    HpaTrigger,
    Signal,
    corrected_seed_hpa_settings,
    seed_hpa_settings,
)
from tiergate.scaling.snapshot import Snapshot

from .builders import snap

WAITING_AV = HpaTrigger(Signal.WAITING, 10, "AverageValue", "sum")
KV_VALUE = HpaTrigger(Signal.KV_USAGE, 0.8, "Value", "avg")
TTFT_VALUE = HpaTrigger(Signal.TTFT_P95, 2, "Value")
TTFT_STRICT = HpaTrigger(Signal.TTFT_P95, 2, "Value", null_as_zero=False)


def hpa(
    *triggers: HpaTrigger,
    min_replicas: int = 1,
    max_replicas: int = 100,
    behavior: HpaBehavior | None = None,
) -> HpaSettings:
    return HpaSettings(triggers, min_replicas, max_replicas, behavior or HpaBehavior())


ONE_SYNC = [
    # metric types
    ("average-value: ceil(sum / target)", hpa(WAITING_AV), snap(2, waiting=15), 3, None, "waiting"),
    ("average-value ignores the current count", hpa(WAITING_AV), snap(5, waiting=6), 3, None, "waiting"),
    ("value: ceil(ready * avg / target)", hpa(KV_VALUE), snap(2, kv=0.9), 3, None, "kv_usage"),
    ("value: tolerance band keeps the count", hpa(KV_VALUE), snap(2, kv=0.85), 2, "tolerance", "kv_usage"),
    ("average-value: tolerance on sum / (target * current)", hpa(WAITING_AV), snap(2, waiting=10.5), 2, "tolerance", "waiting"),
    ("max aggregation: the hottest replica", hpa(HpaTrigger(Signal.KV_USAGE, 0.8, "Value", "max")), snap(2, kv=(1.0, 0.2)), 3, None, "kv_usage"),
    ("avg aggregation: hot replica averaged away", hpa(KV_VALUE), snap(2, kv=(1.0, 0.2)), 2, None, "kv_usage"),
    # semantics traps
    ("trap: value counts ready pods, so pending ones are scaled away", hpa(KV_VALUE), snap(2, kv=0.9, pending=2), 3, None, "kv_usage"),
    ("trap: average-value divides by ready + pending", hpa(WAITING_AV), snap(2, waiting=30, pending=4), 6, "tolerance", "waiting"),
    ("trap: avg() with average-value divides twice", hpa(HpaTrigger(Signal.KV_USAGE, 0.8, "AverageValue", "avg")), snap(4, kv=0.95), 2, None, "kv_usage"),
    ("trap: seed threshold 80 on a 0-1 gauge never fires", seed_hpa_settings(), snap(2, kv=1.0, waiting=0), 2, "bounds", "kv_usage"),
    ("fixed: 0.8 as value fires on a full cache", corrected_seed_hpa_settings(), snap(2, kv=1.0, waiting=0), 3, None, "kv_usage"),
    ("trap: NaN quantile read as 0 votes down", hpa(TTFT_VALUE), snap(4, ttft=None), 1, "bounds", "ttft_p95"),
    ("trap: empty sum() read as 0 votes down", hpa(WAITING_AV), snap(3, waiting=None), 1, "bounds", "waiting"),
    ("unreported replica drops out of sum()", hpa(WAITING_AV), snap(3, waiting=(20, 20, None)), 4, None, "waiting"),
    # unavailable metrics (ignoreNullValues: false)
    ("unavailable metric alone: hold", hpa(TTFT_STRICT), snap(4, ttft=None), 4, "unavailable", None),
    ("unavailable + the rest down: hold", hpa(WAITING_AV, TTFT_STRICT), snap(4, waiting=0), 4, "unavailable", None),
    ("unavailable + the rest up: scale up", hpa(WAITING_AV, TTFT_STRICT), snap(4, waiting=20), 8, None, "waiting"),
    # several triggers
    ("max over triggers: waiting wins", hpa(KV_VALUE, WAITING_AV), snap(2, kv=0.9, waiting=20), 4, None, "waiting"),
    ("max over triggers: kv wins", hpa(KV_VALUE, WAITING_AV), snap(2, kv=1.0, waiting=5), 3, None, "kv_usage"),
    # bounds and rate limits
    ("above max: straight to max", hpa(WAITING_AV, max_replicas=8), snap(10, waiting=0), 8, "bounds", None),
    ("below min: straight to min", hpa(WAITING_AV, min_replicas=2), snap(1, waiting=0), 2, "bounds", None),
    ("scaled to 0 by hand: HPA disabled", hpa(WAITING_AV), snap(0), 0, "scaling_disabled", None),
    ("scale-up policies: max(+100%, +4 pods)", hpa(WAITING_AV), snap(2, waiting=100), 6, "rate_limit", "waiting"),
    ("scale-up capped by max replicas", hpa(WAITING_AV, max_replicas=5), snap(2, waiting=100), 5, "bounds", "waiting"),
    (
        "selectPolicy Min: the smaller change",
        hpa(WAITING_AV, behavior=HpaBehavior(scale_up=HpaScalingRules(0, (HpaScalingPolicy("Percent", 100, 15), HpaScalingPolicy("Pods", 4, 15)), "Min"))),
        snap(2, waiting=100),
        4,
        "rate_limit",
        "waiting",
    ),
    (
        "selectPolicy Disabled: no scale-up",
        hpa(WAITING_AV, behavior=HpaBehavior(scale_up=HpaScalingRules(0, (), "Disabled"))),
        snap(2, waiting=100),
        2,
        "rate_limit",
        "waiting",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("settings", "snapshot", "desired", "guard", "signal"),
    [pytest.param(*case[1:], id=case[0]) for case in ONE_SYNC],
)
def test_one_sync(
    settings: HpaSettings, snapshot: Snapshot, desired: int, guard: str | None, signal: str | None
) -> None:
    decision = HpaPolicy(settings).decide(snapshot, now=0.0)
    assert (decision.desired, decision.guard, decision.signal) == (desired, guard, signal)
    assert decision.reason


def run(policy: HpaPolicy, steps: list[tuple[float, Snapshot]]) -> list[tuple[int, str | None]]:
    decisions = (policy.decide(snapshot, now) for now, snapshot in steps)
    return [(decision.desired, decision.guard) for decision in decisions]


DOWN_PODS_1_PER_60 = HpaBehavior(scale_down=HpaScalingRules(0, (HpaScalingPolicy("Pods", 1, 60),)))
UP_WINDOW_60 = HpaBehavior(scale_up=HpaScalingRules(60, (HpaScalingPolicy("Percent", 100, 15),)))

SEQUENCES = [
    (
        "scale-down waits 300 s for the max recommendation to leave the window",
        hpa(WAITING_AV),
        [(0, snap(2, waiting=30)), (15, snap(6, waiting=1)), (299, snap(6, waiting=1)), (300, snap(6, waiting=1))],
        [(6, None), (6, "stabilization"), (6, "stabilization"), (1, None)],
    ),
    (
        "scale-up events count against their period",
        hpa(WAITING_AV),
        [(0, snap(2, waiting=100)), (5, snap(6, waiting=200 / 6)), (15, snap(6, waiting=200 / 6))],
        [(6, "rate_limit"), (6, "rate_limit"), (12, "rate_limit")],
    ),
    (
        "scale-down by 1 pod per 60 s",
        hpa(WAITING_AV, behavior=DOWN_PODS_1_PER_60),
        [(0, snap(5, waiting=0)), (30, snap(4, waiting=0)), (61, snap(4, waiting=0))],
        [(4, "rate_limit"), (4, "rate_limit"), (3, "rate_limit")],
    ),
    (
        "scale-up stabilization takes the min over its window",
        hpa(WAITING_AV, behavior=UP_WINDOW_60),
        [(0, snap(2, waiting=10)), (15, snap(2, waiting=30)), (45, snap(2, waiting=30)), (60, snap(2, waiting=30))],
        [(2, "tolerance"), (2, "stabilization"), (2, "stabilization"), (4, "rate_limit")],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("settings", "steps", "expected"), [pytest.param(*case[1:], id=case[0]) for case in SEQUENCES]
)
def test_sequence(
    settings: HpaSettings,
    steps: list[tuple[float, Snapshot]],
    expected: list[tuple[int, str | None]],
) -> None:
    assert run(HpaPolicy(settings), steps) == expected


def test_seed_thresholds_flag_the_percentage() -> None:
    kv, waiting, ttft = seed_hpa_settings().triggers
    assert kv.threshold_is_percentage
    assert not waiting.threshold_is_percentage
    assert not ttft.threshold_is_percentage
    assert not any(t.threshold_is_percentage for t in corrected_seed_hpa_settings().triggers)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"threshold": 0}, "threshold must be > 0", id="zero-threshold"),
        pytest.param({"metric_type": "Utilization"}, "AverageValue or Value", id="utilization"),
        pytest.param({"query_aggregation": "min"}, "sum, avg or max", id="aggregation"),
        pytest.param({"signal": "gpu_temp"}, "gpu_temp", id="unknown-signal"),
    ],
)
def test_trigger_validation(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"signal": "waiting", "threshold": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        HpaTrigger(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        pytest.param(lambda: HpaScalingPolicy("Pods", 1, 1801), "periodSeconds", id="period"),
        pytest.param(lambda: HpaScalingPolicy("Pods", 0, 15), "value must be > 0", id="value"),
        pytest.param(lambda: HpaScalingRules(3601, ()), "stabilizationWindowSeconds", id="window"),
        pytest.param(lambda: HpaScalingRules(0, ()), "at least one policy", id="no-policy"),
        pytest.param(lambda: HpaSettings(()), "at least one trigger", id="no-trigger"),
        pytest.param(lambda: HpaSettings((WAITING_AV,), 0, 5), "min_replicas", id="min-zero"),
        pytest.param(lambda: HpaSettings((WAITING_AV,), 6, 5), "min_replicas", id="min-above-max"),
    ],
)
def test_settings_validation(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]
