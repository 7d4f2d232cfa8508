"""tiergate's LLM-aware policy: every signal, every guard, the semantics traps."""

from __future__ import annotations

import math

import pytest

from tiergate.scaling.policy import LlmPolicy, LlmPolicySettings, RoleTargets
from tiergate.scaling.snapshot import Role, Snapshot

from .builders import snap

SEED = LlmPolicySettings()  # unified: KV 0.8, 10 waiting, TTFT P95 2 s; 2..8; cold start 300 s
# A 1 s cold start makes the scale-down window 1 s, to look at the other guards alone.
FAST = LlmPolicySettings(cold_start_s=1.0)
DECODE = LlmPolicySettings(RoleTargets(Role.DECODE, kv_usage=0.8, running=16, itl_p95_s=0.05))
PREFILL = LlmPolicySettings(
    RoleTargets(Role.PREFILL, waiting=10, prompt_token_rate=4000, ttft_p95_s=2.0)
)
WIDE = {"min_replicas": 2, "max_replicas": 20}

ONE_DECISION = [
    # signals
    ("kv: ceil(mean * ready / 0.8)", SEED, snap(2, kv=0.9, waiting=0, ttft=1.0), 3, None, "kv_usage"),
    ("kv at target: float noise adds no replica", SEED, snap(3, kv=0.8, waiting=0, ttft=1.0), 3, None, "kv_usage"),
    ("waiting: ceil(total / 10 per replica)", SEED, snap(2, kv=0.1, waiting=25, ttft=1.0), 5, None, "waiting"),
    ("ttft over objective: ready * observed / objective", SEED, snap(2, kv=0.1, waiting=0, ttft=3.0), 3, None, "ttft_p95"),
    ("request rate: forecast / rate per replica", LlmPolicySettings(RoleTargets(request_rate=2)), snap(2, request_rate=9), 5, None, "request_rate"),
    ("decode: running sequences", DECODE, snap(2, role=Role.DECODE, kv=0.5, running=24, itl=0.04), 3, None, "running"),
    ("decode: inter-token latency", DECODE, snap(3, role=Role.DECODE, kv=0.5, running=8, itl=0.1), 6, None, "itl_p95"),
    ("decode: generation tokens", LlmPolicySettings(RoleTargets(Role.DECODE, generation_token_rate=1000)), snap(2, role=Role.DECODE, generation_token_rate=3000), 3, None, "generation_token_rate"),
    ("decode ignores waiting and TTFT", DECODE, snap(2, role=Role.DECODE, kv=0.5, running=8, itl=0.04, waiting=100, ttft=30), 2, None, "kv_usage"),
    ("prefill: prompt tokens", PREFILL, snap(2, role=Role.PREFILL, waiting=0, prompt_token_rate=20000, ttft=1.0), 5, None, "prompt_token_rate"),
    ("prefill: input backlog", PREFILL, snap(2, role=Role.PREFILL, waiting=35, prompt_token_rate=4000, ttft=1.0), 7, None, "waiting"),
    ("prefill ignores KV and running", PREFILL, snap(2, role=Role.PREFILL, kv=1.0, running=50, waiting=0, prompt_token_rate=4000, ttft=1.0), 2, "bounds", "prompt_token_rate"),
    # bounds, first call
    ("need above max: max", SEED, snap(2, kv=0.1, waiting=200, ttft=1.0), 8, "bounds", "waiting"),
    ("first call: the past is unknown, no scale-down yet", SEED, snap(3, kv=0.1, waiting=0, ttft=1.5), 3, "stabilization", "kv_usage"),
    # pending replicas
    ("pending replicas answer the backlog", SEED, snap(2, pending=2, kv=0.2, waiting=60, ttft=1.0), 4, "pending", "waiting"),
    ("pending due soon still answer", SEED, snap(2, pending=2, pending_ready_at=(200.0, 200.0), kv=0.2, waiting=60, ttft=1.0), 4, "pending", "waiting"),
    ("pending overdue by a stable window answer nothing", SEED, snap(2, pending=2, pending_ready_at=(-100.0, -100.0), kv=0.2, waiting=60, ttft=1.0), 8, "bounds", "waiting"),
    ("pending do not cap demand (rates)", LlmPolicySettings(RoleTargets(waiting=10, request_rate=2)), snap(2, pending=2, waiting=60, request_rate=12), 6, "pending", "request_rate"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("settings", "snapshot", "desired", "guard", "signal"),
    [pytest.param(*case[1:], id=case[0]) for case in ONE_DECISION],
)
def test_one_decision(
    settings: LlmPolicySettings,
    snapshot: Snapshot,
    desired: int,
    guard: str | None,
    signal: str | None,
) -> None:
    decision = LlmPolicy(settings).decide(snapshot, now=0.0)
    assert (decision.desired, decision.guard, decision.signal) == (desired, guard, signal)
    assert decision.reason.startswith(("scale", "hold"))


# Scale-down cases: a first call at t=0 and the case at t=10, past FAST's 1 s window.
SCALE_DOWN = [
    ("trap: NaN TTFT at zero traffic is idle, scale down", snap(4, kv=0.0, waiting=0, running=0, request_rate=0.0), 2, "bounds"),
    ("zero traffic known from the replicas alone", snap(4, kv=0.0, waiting=0, running=0), 2, "bounds"),
    ("trap: NaN TTFT while serving is unknown, hold", snap(4, kv=0.1, waiting=0, running=3, request_rate=5.0), 4, "unknown"),
    ("a float NaN is unknown too", snap(4, kv=0.1, waiting=0, running=3, request_rate=5.0, ttft=math.nan), 4, "unknown"),
    ("trap: an unreported replica blocks scale-down", snap(4, kv=(0.1, None, 0.1, 0.1), waiting=0, ttft=1.0), 4, "unknown"),
    ("nothing reported: hold", snap(4), 4, "unknown"),
    ("everything known and low: scale down", snap(4, kv=0.1, waiting=0, ttft=1.0), 2, "bounds"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("snapshot", "desired", "guard"), [pytest.param(*case[1:], id=case[0]) for case in SCALE_DOWN]
)
def test_scale_down(snapshot: Snapshot, desired: int, guard: str | None) -> None:
    policy = LlmPolicy(FAST)
    policy.decide(snapshot, now=0.0)
    decision = policy.decide(snapshot, now=10.0)
    assert (decision.desired, decision.guard) == (desired, guard)


def test_unreported_replica_may_still_scale_up() -> None:
    decision = LlmPolicy(FAST).decide(snap(2, kv=(0.95, None), waiting=0, ttft=1.0), now=0.0)
    assert (decision.desired, decision.guard, decision.signal) == (3, None, "kv_usage")


def run(policy: LlmPolicy, steps: list[tuple[float, Snapshot]]) -> list[tuple[int, str | None]]:
    decisions = (policy.decide(snapshot, now) for now, snapshot in steps)
    return [(decision.desired, decision.guard) for decision in decisions]


BURST = snap(2, kv=0.2, waiting=30, ttft=1.0)
CALM6 = snap(6, kv=0.1, waiting=0, ttft=1.0)

SEQUENCES = [
    (
        "scale-down only after the window (>= cold start) since the last high recommendation",
        SEED,
        [(0, BURST), (15, CALM6), (100, CALM6), (314, CALM6), (315, CALM6)],
        [(6, None), (6, "panic"), (6, "stabilization"), (6, "stabilization"), (2, "bounds")],
    ),
    (
        "panic: no scale-down until a stable window after the burst",
        FAST,
        [(0, BURST), (15, CALM6), (59, CALM6), (60, CALM6)],
        [(6, None), (6, "panic"), (6, "panic"), (2, "bounds")],
    ),
    (
        "own scale-up answers the growing backlog while its replicas start",
        SEED,
        [
            (0, snap(2, kv=0.2, waiting=30, ttft=1.0)),
            (15, snap(2, pending=4, kv=0.3, waiting=50, ttft=3.0)),
            (200, snap(2, pending=4, kv=0.4, waiting=80, ttft=9.0)),
        ],
        [(6, None), (6, "pending"), (6, "pending")],
    ),
    (
        "demand growth beyond the answered scale-up reopens it",
        LlmPolicySettings(RoleTargets(waiting=10), min_replicas=2, max_replicas=40),
        [
            (0, snap(2, waiting=30, request_rate=4.0)),
            (15, snap(2, pending=4, waiting=50, request_rate=4.0)),
            (30, snap(2, pending=4, waiting=50, request_rate=8.0)),
        ],
        # 100 waiting, arrivals doubled and still rising (forecast capped at 2x): 20
        [(6, None), (6, "pending"), (20, None)],
    ),
    (
        "rising arrivals: replicas asked a cold start ahead",
        LlmPolicySettings(RoleTargets(request_rate=1.0), **WIDE),
        [(t, snap(2, request_rate=1.0 + 0.2 * i)) for i, t in enumerate((0, 15, 30, 45, 60))],
        [(2, "bounds"), (2, None), (3, None), (4, None), (4, None)],
    ),
    (
        "flat arrivals: no forecast growth",
        LlmPolicySettings(RoleTargets(request_rate=1.0), **WIDE),
        [(t, snap(2, request_rate=1.8)) for t in (0, 15, 30, 45, 60)],
        [(2, None)] * 5,
    ),
    (
        "rising arrivals project the KV gauge",
        SEED,
        [(t, snap(2, kv=0.6, waiting=0, ttft=1.0, request_rate=r)) for t, r in ((0, 2.0), (15, 2.4), (30, 2.8))],
        [(2, None), (2, None), (3, None)],
    ),
    (
        "flat arrivals leave the KV gauge as it is",
        SEED,
        [(t, snap(2, kv=0.6, waiting=0, ttft=1.0, request_rate=2.0)) for t in (0, 15, 30)],
        [(2, None)] * 3,
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("settings", "steps", "expected"), [pytest.param(*case[1:], id=case[0]) for case in SEQUENCES]
)
def test_sequence(
    settings: LlmPolicySettings,
    steps: list[tuple[float, Snapshot]],
    expected: list[tuple[int, str | None]],
) -> None:
    assert run(LlmPolicy(settings), steps) == expected


def test_wrong_role_is_a_wiring_error() -> None:
    with pytest.raises(ValueError, match="prefill deployment"):
        LlmPolicy(SEED).decide(snap(role=Role.PREFILL, waiting=0), now=0.0)


def test_reason_names_signal_and_guard() -> None:
    decision = LlmPolicy(SEED).decide(snap(2, pending=2, kv=0.2, waiting=60, ttft=1.0), 0.0)
    assert "waiting" in decision.reason
    assert "pending replica" in decision.reason


@pytest.mark.parametrize(
    ("build", "message"),
    [
        pytest.param(
            lambda: RoleTargets(kv_usage=80), r"0-1 fraction: write 0\.8", id="kv-80-vs-0.8"
        ),
        pytest.param(
            lambda: RoleTargets(Role.PREFILL, kv_usage=0.8),
            "does not scale on kv_usage",
            id="prefill-kv",
        ),
        pytest.param(
            lambda: RoleTargets(Role.DECODE, ttft_p95_s=2.0),
            "does not scale on ttft_p95",
            id="decode-ttft",
        ),
        pytest.param(
            lambda: RoleTargets(Role.DECODE, waiting=10),
            "does not scale on waiting",
            id="decode-waiting",
        ),
        pytest.param(lambda: RoleTargets(waiting=0), "must be > 0", id="zero-target"),
        pytest.param(RoleTargets, "at least one signal", id="no-target"),
        pytest.param(
            lambda: LlmPolicySettings(cold_start_s=600, scale_down_stabilization_s=300),
            "at least cold_start_s",
            id="window-below-cold-start",
        ),
        pytest.param(lambda: LlmPolicySettings(cold_start_s=0), "cold_start_s", id="no-cold-start"),
        pytest.param(lambda: LlmPolicySettings(min_replicas=0), "min_replicas", id="min-zero"),
        pytest.param(lambda: LlmPolicySettings(min_replicas=9), "min_replicas", id="min-above-max"),
        pytest.param(
            lambda: LlmPolicySettings(stable_window_s=5), "stable_window_s", id="stable-too-short"
        ),
        pytest.param(
            lambda: LlmPolicySettings(panic_window_s=61), "panic_window_s", id="panic-above-stable"
        ),
        pytest.param(
            lambda: LlmPolicySettings(panic_threshold=1.0), "panic_threshold", id="panic-threshold"
        ),
        pytest.param(
            lambda: LlmPolicySettings(max_forecast_growth=0.5),
            "max_forecast_growth",
            id="forecast-growth",
        ),
    ],
)
def test_settings_validation(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


def test_settings_derived_values() -> None:
    settings = LlmPolicySettings(cold_start_s=420)
    assert settings.horizon_s == 420
    assert settings.scale_down_window_s == 420
    assert (
        LlmPolicySettings(cold_start_s=420, scale_down_stabilization_s=900).scale_down_window_s
        == 900
    )


@pytest.mark.parametrize("role", list(Role))
def test_seed_targets_fit_every_role(role: Role) -> None:
    targets = RoleTargets.seed(role)
    assert targets.role is role
    assert targets.items()
    LlmPolicy(LlmPolicySettings(targets))
