"""A fleet's ``scaling`` entry as the policy of its mode (the spec stays free of policy types)."""

from __future__ import annotations

from tiergate.scaling.policy import (
    HpaSettings,
    HpaTrigger,
    LlmPolicySettings,
    RoleTargets,
    ScalingPolicy,
    Signal,
    make_policy,
)
from tiergate.scaling.snapshot import Role
from tiergate.spec.scaling import ScalingEntry


def role_targets(entry: ScalingEntry) -> RoleTargets:
    t = entry.targets
    return RoleTargets(
        role=Role(entry.role),
        kv_usage=t.kv_cache_usage,
        waiting=t.waiting_per_replica,
        running=t.running_per_replica,
        request_rate=t.requests_per_replica_s,
        prompt_token_rate=t.prompt_tokens_per_replica_s,
        generation_token_rate=t.generation_tokens_per_replica_s,
        ttft_p95_s=t.ttft_p95_s,
        itl_p95_s=t.itl_p95_s,
    )


def hpa_settings(entry: ScalingEntry) -> HpaSettings:
    """What a correctly written KEDA ScaledObject with these targets makes the HPA do: per-replica
    gauges and quantiles as ``Value`` over their average or quantile, queues as ``AverageValue``
    over their sum."""
    t = entry.targets
    triggers = []
    if t.kv_cache_usage is not None:
        triggers.append(HpaTrigger(Signal.KV_USAGE, t.kv_cache_usage, "Value", "avg"))
    if t.waiting_per_replica is not None:
        triggers.append(HpaTrigger(Signal.WAITING, t.waiting_per_replica, "AverageValue", "sum"))
    if t.running_per_replica is not None:
        triggers.append(HpaTrigger(Signal.RUNNING, t.running_per_replica, "AverageValue", "sum"))
    if t.ttft_p95_s is not None:
        triggers.append(HpaTrigger(Signal.TTFT_P95, t.ttft_p95_s, "Value"))
    if t.itl_p95_s is not None:
        triggers.append(HpaTrigger(Signal.ITL_P95, t.itl_p95_s, "Value"))
    for signal, target in (
        (Signal.REQUEST_RATE, t.requests_per_replica_s),
        (Signal.PROMPT_TOKEN_RATE, t.prompt_tokens_per_replica_s),
        (Signal.GENERATION_TOKEN_RATE, t.generation_tokens_per_replica_s),
    ):
        if target is not None:
            triggers.append(HpaTrigger(signal, target, "AverageValue", "sum"))
    return HpaSettings(
        triggers=tuple(triggers),
        min_replicas=max(entry.min_replicas, 1),
        max_replicas=entry.max_replicas,
    )


def llm_settings(entry: ScalingEntry) -> LlmPolicySettings:
    windows = entry.windows
    return LlmPolicySettings(
        targets=role_targets(entry),
        min_replicas=max(entry.min_replicas, 1),
        max_replicas=entry.max_replicas,
        cold_start_s=entry.cold_start_s,
        scale_down_stabilization_s=windows.scale_down_stabilization_s,
        stable_window_s=windows.stable_s,
        panic_window_s=windows.panic_s,
        panic_threshold=windows.panic_threshold,
    )


def policies(entry: ScalingEntry) -> tuple[ScalingPolicy, ScalingPolicy]:
    """Both modes' policies for ``entry``: the one it runs first, then the other (for the
    operator's comparison)."""
    hpa, llm = make_policy(hpa_settings(entry)), make_policy(llm_settings(entry))
    return (llm, hpa) if entry.mode == "tiergate" else (hpa, llm)
