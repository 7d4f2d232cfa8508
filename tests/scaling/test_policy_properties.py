"""Properties over arbitrary signal sequences (hypothesis), for both policies."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from tiergate.scaling.policy import (
    HpaPolicy,
    HpaSettings,
    HpaTrigger,
    LlmPolicy,
    LlmPolicySettings,
    RoleTargets,
    Signal,
)
from tiergate.scaling.snapshot import ReplicaSignals, Role, Snapshot

EXAMPLES = settings(max_examples=150, deadline=None)
GAUGES = {Signal.KV_USAGE: "kv_usage", Signal.WAITING: "waiting", Signal.RUNNING: "running"}

maybe_fraction = st.none() | st.floats(0, 1)
maybe_count = st.none() | st.floats(0, 200)
maybe_rate = st.none() | st.floats(0, 100)
maybe_latency = st.none() | st.floats(0, 30)
replica = st.builds(ReplicaSignals, maybe_fraction, maybe_count, maybe_count)


@st.composite
def signals(draw: st.DrawFn, ready: int, pending: int) -> Snapshot:
    """A unified deployment with ``ready`` + ``pending`` replicas and arbitrary signals."""
    reported = draw(st.integers(0, ready))
    return Snapshot(
        deployment="llm",
        role=Role.UNIFIED,
        at=0.0,
        ready=ready,
        replicas=tuple(draw(st.lists(replica, min_size=reported, max_size=reported))),
        pending=pending,
        request_rate=draw(maybe_rate),
        prompt_token_rate=draw(maybe_rate),
        generation_token_rate=draw(maybe_rate),
        ttft_p95_s=draw(maybe_latency),
        itl_p95_s=draw(maybe_latency),
    )


@st.composite
def any_snapshot(draw: st.DrawFn) -> Snapshot:
    return draw(signals(draw(st.integers(0, 12)), draw(st.integers(0, 4))))


steps = st.lists(st.tuples(st.floats(1, 120), any_snapshot()), min_size=1, max_size=25)

llm_settings = st.builds(
    LlmPolicySettings,
    targets=st.sampled_from(
        [
            RoleTargets.seed(),
            RoleTargets(kv_usage=0.8, running=16, request_rate=2.0, itl_p95_s=0.05),
            RoleTargets(prompt_token_rate=4000, generation_token_rate=1000, waiting=5),
        ]
    ),
    min_replicas=st.integers(1, 3),
    max_replicas=st.integers(3, 10),
    cold_start_s=st.sampled_from([1.0, 60.0, 300.0]),
)

TRIGGERS = (
    HpaTrigger(Signal.KV_USAGE, 0.8, "Value", "avg"),
    HpaTrigger(Signal.WAITING, 10, "AverageValue", "sum"),
    HpaTrigger(Signal.TTFT_P95, 2, "Value", null_as_zero=False),
    HpaTrigger(Signal.REQUEST_RATE, 2, "AverageValue"),
)
hpa_settings = st.builds(
    HpaSettings,
    triggers=st.lists(st.sampled_from(TRIGGERS), min_size=1, max_size=4, unique=True).map(tuple),
    min_replicas=st.integers(1, 3),
    max_replicas=st.integers(3, 10),
)


@EXAMPLES
@given(llm_settings, steps)
def test_llm_desired_within_bounds(
    config: LlmPolicySettings, run: list[tuple[float, Snapshot]]
) -> None:
    policy, now = LlmPolicy(config), 0.0
    for dt, snapshot in run:
        now += dt
        desired = policy.decide(snapshot, now).desired
        assert config.min_replicas <= desired <= config.max_replicas


@EXAMPLES
@given(hpa_settings, steps)
def test_hpa_desired_within_bounds(config: HpaSettings, run: list[tuple[float, Snapshot]]) -> None:
    policy, now = HpaPolicy(config), 0.0
    for dt, snapshot in run:
        now += dt
        if snapshot.ready + snapshot.pending == 0:
            continue  # a target scaled to 0 by hand disables the HPA
        desired = policy.decide(snapshot, now).desired
        assert config.min_replicas <= desired <= config.max_replicas


@EXAMPLES
@given(llm_settings, steps, st.data())
def test_llm_never_scales_down_on_unknown(
    config: LlmPolicySettings, run: list[tuple[float, Snapshot]], data: st.DataObject
) -> None:
    """With the first configured per-replica gauge (or TTFT while serving) unknown on one
    replica, the count never goes below the current one (bounds aside)."""
    policy, now = LlmPolicy(config), 0.0
    for dt, snapshot in run:
        now += dt
        if data.draw(st.booleans()):
            unknown = _one_unknown(config, snapshot)
            desired = policy.decide(unknown, now).desired
            current = unknown.ready + unknown.pending
            assert desired >= min(current, config.max_replicas)
        else:
            policy.decide(snapshot, now)


def _one_unknown(config: LlmPolicySettings, snapshot: Snapshot) -> Snapshot:
    """``snapshot`` with the first configured per-replica gauge unreported by one replica
    (with no replica reported at all, it is unknown already)."""
    gauge = next(signal for signal, _ in config.targets.items() if signal in GAUGES)
    if not snapshot.replicas:
        return snapshot
    first = replace(snapshot.replicas[0], **{GAUGES[gauge]: None})
    return replace(snapshot, replicas=(first, *snapshot.replicas[1:]))


@st.composite
def loop_step(draw: st.DrawFn) -> tuple[float, int, Snapshot]:
    """Time step, pending count and signals for up to 12 replicas; cut to size by the loop."""
    return draw(st.floats(1, 120)), draw(st.integers(0, 4)), draw(signals(12, 0))


def _drive(
    policy: LlmPolicy | HpaPolicy,
    start: int,
    window_s: float,
    run: list[tuple[float, int, Snapshot]],
) -> None:
    """The deployment follows each decision at once; after a scale-up, no scale-down
    within ``window_s``."""
    current, now, last_up = start, 0.0, None
    for dt, pending_wanted, full in run:
        now += dt
        pending = min(pending_wanted, current)
        ready = current - pending
        snapshot = replace(full, ready=ready, pending=pending, replicas=full.replicas[:ready])
        desired = policy.decide(snapshot, now).desired
        if last_up is not None and now < last_up + window_s:
            assert desired >= current, f"scale-down {current}→{desired} at {now}, up at {last_up}"
        if desired > current:
            last_up = now
        current = desired


loop = st.lists(loop_step(), min_size=1, max_size=25)


@EXAMPLES
@given(llm_settings, st.integers(1, 10), loop)
def test_llm_no_scale_down_within_window_after_scale_up(
    config: LlmPolicySettings, start: int, run: list[tuple[float, int, Snapshot]]
) -> None:
    start = min(max(start, config.min_replicas), config.max_replicas)
    _drive(LlmPolicy(config), start, config.scale_down_window_s, run)


@EXAMPLES
@given(hpa_settings, st.integers(1, 10), loop)
def test_hpa_no_scale_down_within_window_after_scale_up(
    config: HpaSettings, start: int, run: list[tuple[float, int, Snapshot]]
) -> None:
    start = min(max(start, config.min_replicas), config.max_replicas)
    window = config.behavior.scale_down.stabilization_window_s
    _drive(HpaPolicy(config), start, window, run)
