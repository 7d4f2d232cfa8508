"""Scaling policies: a :class:`Snapshot` and the time in, a :class:`Decision` out.

Two policies with one shape, so the live scaler and the simulator drive either the same way
(DESIGN.md principle 2): pure apart from the small state their real counterparts keep, no
clock reads, no randomness, no I/O.

* :class:`HpaPolicy` (mode ``hpa``): what KEDA's Prometheus triggers and the Kubernetes HPA
  compute, the baseline to compare against (:mod:`~tiergate.scaling.policy_hpa`).
* :class:`LlmPolicy` (mode ``tiergate``): capacity for the load expected when a new replica
  would serve, panic on bursts, no double answer to pending replicas, scale-down stabilized
  over at least a cold start (:mod:`~tiergate.scaling.policy_llm`).

Disaggregated serving runs one policy per role deployment (prefill, decode), each with its own
targets and bounds.
"""

from __future__ import annotations

from typing import Protocol

from tiergate.scaling.policy_base import Guard, Signal
from tiergate.scaling.policy_forecast import Forecast, forecast
from tiergate.scaling.policy_hpa import HpaPolicy
from tiergate.scaling.policy_hpa_settings import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    HpaBehavior,
    HpaScalingPolicy,
    HpaScalingRules,
    HpaSettings,
    HpaTrigger,
    corrected_seed_hpa_settings,
    seed_hpa_settings,
)
from tiergate.scaling.policy_llm import LlmPolicy
from tiergate.scaling.policy_llm_settings import ROLE_SIGNALS, LlmPolicySettings, RoleTargets
from tiergate.scaling.snapshot import Decision, Snapshot

__all__ = [
    "DEFAULT_SCALE_DOWN",
    "DEFAULT_SCALE_UP",
    "ROLE_SIGNALS",
    "Forecast",
    "Guard",
    "HpaBehavior",
    "HpaPolicy",
    "HpaScalingPolicy",
    "HpaScalingRules",
    "HpaSettings",
    "HpaTrigger",
    "LlmPolicy",
    "LlmPolicySettings",
    "RoleTargets",
    "ScalingPolicy",
    "Signal",
    "corrected_seed_hpa_settings",
    "forecast",
    "make_policy",
    "seed_hpa_settings",
]


class ScalingPolicy(Protocol):
    """What the scaler and the simulator call, once per evaluation of one deployment."""

    def decide(self, snapshot: Snapshot, now: float) -> Decision:
        """The desired replicas for ``snapshot`` at ``now`` (seconds, the caller's clock)."""
        ...


def make_policy(settings: HpaSettings | LlmPolicySettings) -> ScalingPolicy:
    """A fresh policy (empty state) for one deployment: HPA or tiergate mode by settings type."""
    if isinstance(settings, HpaSettings):
        return HpaPolicy(settings)
    return LlmPolicy(settings)
