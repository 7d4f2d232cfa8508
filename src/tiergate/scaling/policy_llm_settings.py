"""Settings of the LLM-aware policy: per-role targets, bounds, cold start and windows.

Validated at construction, so a policy never runs on settings that cannot work:

* a KV target above 1 is the seed's ``threshold: "80"`` on a 0-1 gauge (``vllm:kv_cache_usage_perc``
  is a fraction despite its name; see vLLM's ``vllm/v1/metrics/loggers.py``) and is refused;
* a target on a signal the role does not have is refused (prefill scales on the input
  backlog, prompt tokens and TTFT; decode on running sequences, KV cache and inter-token
  latency; unified on all of them);
* the scale-down stabilization window must be at least the cold start: scaling down a replica
  that takes ``cold_start_s`` to bring back, on evidence shorter than that, invites flapping.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tiergate.scaling.policy_base import FRACTION_SIGNALS, Signal
from tiergate.scaling.snapshot import Role

ROLE_SIGNALS: dict[Role, frozenset[Signal]] = {
    Role.UNIFIED: frozenset(Signal),
    Role.PREFILL: frozenset(
        {Signal.WAITING, Signal.REQUEST_RATE, Signal.PROMPT_TOKEN_RATE, Signal.TTFT_P95}
    ),
    Role.DECODE: frozenset(
        {
            Signal.RUNNING,
            Signal.KV_USAGE,
            Signal.REQUEST_RATE,
            Signal.GENERATION_TOKEN_RATE,
            Signal.ITL_P95,
        }
    ),
}

# Knative KPA bounds and defaults (knative/docs kpa-specific.md).
MIN_STABLE_WINDOW_S = 6.0
MAX_STABLE_WINDOW_S = 3600.0
# Pod startup of an LLM server: 2-7 min (llm-d WVA docs); 425-439 s to a Ready model on a new
# GPU node (Karpenter GPU cold-start measurements). 300 s is the middle of the WVA range.
DEFAULT_COLD_START_S = 300.0


@dataclass(frozen=True, slots=True)
class RoleTargets:
    """What one replica of ``role`` should carry; ``None`` means "do not scale on it".

    Per-replica gauges: ``kv_usage`` (0-1 fraction), ``waiting``, ``running``. Rates per
    replica per second: ``request_rate``, ``prompt_token_rate``, ``generation_token_rate``.
    Latency objectives in seconds (P95): ``ttft_p95_s``, ``itl_p95_s``.
    """

    role: Role = Role.UNIFIED
    kv_usage: float | None = None
    waiting: float | None = None
    running: float | None = None
    request_rate: float | None = None
    prompt_token_rate: float | None = None
    generation_token_rate: float | None = None
    ttft_p95_s: float | None = None
    itl_p95_s: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", Role(self.role))
        allowed = ROLE_SIGNALS[self.role]
        for signal, target in self._all():
            if target is None:
                continue
            if not target > 0:
                raise ValueError(f"{signal} target must be > 0, not {target}")
            if signal in FRACTION_SIGNALS and target > 1:
                raise ValueError(
                    f"{signal} target {target:g} is above 1, but vllm:kv_cache_usage_perc is a "
                    f"0-1 fraction: write {target / 100:g}, not {target:g}"
                )
            if signal not in allowed:
                raise ValueError(f"a {self.role} deployment does not scale on {signal}")
        if not self.items():
            raise ValueError(f"{self.role} targets: set at least one signal")

    def _all(self) -> tuple[tuple[Signal, float | None], ...]:
        return (
            (Signal.KV_USAGE, self.kv_usage),
            (Signal.WAITING, self.waiting),
            (Signal.RUNNING, self.running),
            (Signal.REQUEST_RATE, self.request_rate),
            (Signal.PROMPT_TOKEN_RATE, self.prompt_token_rate),
            (Signal.GENERATION_TOKEN_RATE, self.generation_token_rate),
            (Signal.TTFT_P95, self.ttft_p95_s),
            (Signal.ITL_P95, self.itl_p95_s),
        )

    def items(self) -> tuple[tuple[Signal, float], ...]:
        """The signals this role scales on, with their targets, in a fixed order."""
        return tuple((signal, target) for signal, target in self._all() if target is not None)

    @classmethod
    def seed(cls, role: Role = Role.UNIFIED) -> RoleTargets:
        """The seed's thresholds (KV 80% as 0.8, 10 waiting, TTFT P95 2 s) kept to ``role``."""
        if role is Role.PREFILL:
            return cls(role, waiting=10, ttft_p95_s=2.0)
        if role is Role.DECODE:
            return cls(role, kv_usage=0.8)
        return cls(role, kv_usage=0.8, waiting=10, ttft_p95_s=2.0)


@dataclass(frozen=True, slots=True)
class LlmPolicySettings:
    """One deployment's LLM-aware scaling settings (each role is its own deployment).

    ``cold_start_s``: time from asking for a replica to its serving; also the forecast horizon.
    ``scale_down_stabilization_s``: scale-down uses the largest recommendation over this
    window; ``None`` means the cold start, a shorter value is refused.
    ``stable_window_s`` / ``panic_window_s`` / ``panic_threshold``: Knative KPA's windows
    (60 s, 6 s, 2.0): the trend is fitted over the stable window, the current level is the
    panic-window mean, and panic starts when the load needs ``panic_threshold`` times the ready
    replicas. ``max_forecast_growth``: the forecast is at most this multiple of the current
    rate. ``tolerance``: demand growth below it does not reopen an answered scale-up.
    """

    targets: RoleTargets = field(default_factory=RoleTargets.seed)
    min_replicas: int = 2
    max_replicas: int = 8
    cold_start_s: float = DEFAULT_COLD_START_S
    scale_down_stabilization_s: float | None = None
    stable_window_s: float = 60.0
    panic_window_s: float = 6.0
    panic_threshold: float = 2.0
    max_forecast_growth: float = 2.0
    tolerance: float = 0.1

    def __post_init__(self) -> None:
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError(
                f"need 1 <= min_replicas <= max_replicas, got {self.min_replicas}, "
                f"{self.max_replicas} (scale from zero is KEDA activation's job)"
            )
        if not self.cold_start_s > 0:
            raise ValueError(f"cold_start_s must be > 0, not {self.cold_start_s}")
        window = self.scale_down_stabilization_s
        if window is not None and window < self.cold_start_s:
            raise ValueError(
                f"scale_down_stabilization_s ({window:g}) must be at least cold_start_s "
                f"({self.cold_start_s:g}): a replica scaled down sooner takes a cold start "
                "to come back"
            )
        if not MIN_STABLE_WINDOW_S <= self.stable_window_s <= MAX_STABLE_WINDOW_S:
            raise ValueError(
                f"stable_window_s must be in [{MIN_STABLE_WINDOW_S:g}, "
                f"{MAX_STABLE_WINDOW_S:g}], not {self.stable_window_s}"
            )
        if not 0 < self.panic_window_s <= self.stable_window_s:
            raise ValueError("panic_window_s must be > 0 and at most stable_window_s")
        if not self.panic_threshold > 1:
            raise ValueError(f"panic_threshold must be > 1, not {self.panic_threshold}")
        if not self.max_forecast_growth >= 1:
            raise ValueError(f"max_forecast_growth must be >= 1, not {self.max_forecast_growth}")
        if not 0 <= self.tolerance < 1:
            raise ValueError(f"tolerance must be in [0, 1), not {self.tolerance}")

    @property
    def role(self) -> Role:
        """The role of the deployment these settings scale."""
        return self.targets.role

    @property
    def horizon_s(self) -> float:
        """How far ahead capacity is planned: a replica asked for now serves after this."""
        return self.cold_start_s

    @property
    def scale_down_window_s(self) -> float:
        """The effective scale-down stabilization window (at least the cold start)."""
        if self.scale_down_stabilization_s is None:
            return self.cold_start_s
        return self.scale_down_stabilization_s
