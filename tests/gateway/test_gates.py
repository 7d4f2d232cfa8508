"""The cascade's per-tier gates and one request's walk, as pure objects with a hand-set ``now``:
the same code ``tiergate serve`` runs in real time and the simulator in virtual time."""

from __future__ import annotations

from typing import Any

from tests.gateway.helpers import build_fleet, fleet_yaml, tier
from tiergate.gateway.breaker import BreakerState
from tiergate.gateway.cascade import Skip
from tiergate.gateway.gates import CascadeWalk, TierGates, WalkStep
from tiergate.spec import Fleet

STATUS = {"statusCode": [429, 500, 502, 503, 504]}
LATENCY = {"latencyMs": "> 2000"}
ERROR_RATE = {"errorRate": "> 0.5"}
# Four outcomes fill the window enough to judge; 0.3 s of cooldown before a probe.
BREAKER = {"windowMs": 10_000, "minRequests": 4, "cooldownMs": 300}


def fleet(*conditions: dict[str, Any], names: str = "abc") -> Fleet:
    tiers = [tier(name, f"http://127.0.0.1:1/{name}") for name in names]
    return build_fleet(fleet_yaml(tiers, fallback=[STATUS, *conditions], breaker=BREAKER))


def walk_all(walk: CascadeWalk, now: float) -> list[WalkStep]:
    """Every step of a walk in which every attempt fails (bounded by the tiers, twice)."""
    steps = []
    for _ in range(6):
        step = walk.next(now)
        if step is None:
            break
        steps.append(step)
    return steps


def open_breaker(gates: TierGates, name: str, now: float) -> None:
    # 4 failures of 4 = 1.0 > 0.5 with minRequests 4: the breaker opens at ``now``.
    for _ in range(4):
        gates.record(name, now, ok=False)
    assert gates.breaker_state(name, now) is BreakerState.OPEN


def test_healthy_cascade_walks_in_order_without_skips() -> None:
    f = fleet()
    walk = CascadeWalk(("a", "b", "c"), TierGates(f), f.fallback)
    assert walk_all(walk, 0.0) == [
        WalkStep("a", False, ()),
        WalkStep("b", False, ()),
        WalkStep("c", False, ()),
    ]
    assert walk.next(0.0) is None
    assert walk.last_skipped == ()


def test_unhealthy_tier_is_skipped_with_its_reason_until_it_is_up_again() -> None:
    f = fleet()
    gates = TierGates(f)
    gates.set_up("a", False)
    walk = CascadeWalk(("a", "b", "c"), gates, f.fallback)
    # The skip of a is reported with the step that passed it, once.
    assert walk.next(0.0) == WalkStep("b", False, (("a", "unhealthy"),))
    assert walk.next(0.0) == WalkStep("c", False, ())
    gates.set_up("a", True)
    assert CascadeWalk(("a", "b"), gates, f.fallback).next(0.0) == WalkStep("a", False, ())


def test_skips_after_the_last_attempt_are_kept_for_the_move_to_none() -> None:
    f = fleet()
    gates = TierGates(f)
    gates.set_up("b", False)
    gates.set_up("c", False)
    walk = CascadeWalk(("a", "b", "c"), gates, f.fallback)
    assert walk.next(0.0) == WalkStep("a", False, ())
    assert walk.next(0.0) is None
    assert walk.last_skipped == (("b", "unhealthy"), ("c", "unhealthy"))


def test_nothing_attemptable_ends_the_walk_at_once() -> None:
    f = fleet()
    gates = TierGates(f)
    for name in "abc":
        gates.set_up(name, False)
    walk = CascadeWalk(("a", "b", "c"), gates, f.fallback)
    assert walk.next(0.0) is None
    assert walk.last_skipped == (("a", "unhealthy"), ("b", "unhealthy"), ("c", "unhealthy"))


def test_open_breaker_skips_then_lets_one_probe_through_after_cooldown() -> None:
    f = fleet(ERROR_RATE)
    gates = TierGates(f)
    open_breaker(gates, "a", now=1.0)
    assert CascadeWalk(("a", "b"), gates, f.fallback).next(1.1) == WalkStep(
        "b", False, (("a", "breaker_open"),)
    )
    # 1.4 - 1.0 = 0.4 s >= the 0.3 s cooldown: the first request probes a ...
    assert CascadeWalk(("a", "b"), gates, f.fallback).next(1.4) == WalkStep("a", False, ())
    assert gates.breaker_state("a", 1.4) is BreakerState.HALF_OPEN
    # ... and a second one, while the probe is out, still goes around it.
    assert CascadeWalk(("a", "b"), gates, f.fallback).next(1.4) == WalkStep(
        "b", False, (("a", "breaker_open"),)
    )
    gates.record("a", 1.5, ok=True)  # the probe served: closed again
    assert gates.breaker_state("a", 1.5) is BreakerState.CLOSED
    assert CascadeWalk(("a", "b"), gates, f.fallback).next(1.5) == WalkStep("a", False, ())


def test_probe_of_a_saturated_tier_is_given_back() -> None:
    f = fleet(ERROR_RATE)
    gates = TierGates(f)
    open_breaker(gates, "a", now=1.0)
    gates.set_saturated("a", True)
    walk = CascadeWalk(("a", "b"), gates, f.fallback)
    assert walk.next(1.4) == WalkStep("b", False, (("a", "saturated"),))
    # Nobody holds the probe: once a has room again, the next request gets it.
    gates.set_saturated("a", False)
    assert CascadeWalk(("a", "b"), gates, f.fallback).next(1.4) == WalkStep("a", False, ())


def test_released_probe_goes_to_the_next_request() -> None:
    f = fleet(ERROR_RATE)
    gates = TierGates(f)
    open_breaker(gates, "a", now=1.0)
    assert CascadeWalk(("a", "b"), gates, f.fallback).next(1.4) == WalkStep("a", False, ())
    gates.release("a", 1.4)  # the client went away before an outcome
    assert CascadeWalk(("a", "b"), gates, f.fallback).next(1.4) == WalkStep("a", False, ())


def test_saturated_tiers_are_last_resorts_in_cascade_order() -> None:
    f = fleet(LATENCY)
    gates = TierGates(f)
    gates.set_saturated("a", True)
    gates.set_saturated("b", True)
    walk = CascadeWalk(("a", "b", "c"), gates, f.fallback)
    assert walk_all(walk, 0.0) == [
        # c is the last of the cascade, but a and b (saturated) are still left behind it.
        WalkStep("c", True, (("a", "saturated"), ("b", "saturated"))),
        WalkStep("a", True, ()),  # b is still left
        WalkStep("b", False, ()),  # the last resort waits out its own timeouts
    ]
    assert walk.last_skipped == ()


def test_tier_left_counts_only_tiers_that_could_be_attempted() -> None:
    f = fleet(LATENCY, ERROR_RATE)
    gates = TierGates(f)
    open_breaker(gates, "c", now=1.0)
    gates.set_up("b", False)
    walk = CascadeWalk(("a", "b", "c"), gates, f.fallback)
    # b down and c's breaker open (1.1 - 1.0 < 0.3 s cooldown): nothing after a.
    assert walk.next(1.1) == WalkStep("a", False, ())
    # Once c's cooldown is over it could be probed: a has a tier left (without taking the probe).
    walk = CascadeWalk(("a", "b", "c"), gates, f.fallback)
    assert walk.next(1.4) == WalkStep("a", True, ())
    assert walk.next(1.4) == WalkStep("c", False, (("b", "unhealthy"),))


def test_without_latency_ms_no_tier_is_ever_left() -> None:
    f = fleet()
    gates = TierGates(f)
    gates.set_saturated("a", True)
    gates.set_saturated("b", True)
    steps = walk_all(CascadeWalk(("a", "b", "c"), gates, f.fallback), 0.0)
    assert [s.tier for s in steps] == ["c", "a", "b"]
    assert [s.tier_left for s in steps] == [False, False, False]


def test_absent_tier_is_skipped_without_taking_its_probe() -> None:
    f = fleet(ERROR_RATE)
    gates = TierGates(f)
    open_breaker(gates, "a", now=1.0)

    def absent(name: str) -> Skip | None:
        return Skip.UNSUPPORTED if name == "a" else None

    walk = CascadeWalk(("a", "b"), gates, f.fallback, absent=absent)
    assert walk.next(1.4) == WalkStep("b", False, (("a", "unsupported"),))
    # The probe of a is still there for a request a can serve.
    assert CascadeWalk(("a", "b"), gates, f.fallback).next(1.4) == WalkStep("a", False, ())


def test_usable_and_the_breaker_listener() -> None:
    f = fleet(ERROR_RATE)
    shown: list[tuple[str, BreakerState]] = []
    gates = TierGates(f, on_breaker=lambda name, state: shown.append((name, state)))
    gates.set_up("b", False)
    gates.set_saturated("c", True)
    open_breaker(gates, "a", now=1.0)
    # a open, b down; c saturated but still usable as a last resort.
    assert gates.usable(1.1) == {"a": False, "b": False, "c": True}
    assert gates.usable(1.4)["a"]  # cooled down: a probe would be let through
    # Every recorded outcome is shown; the fourth opened the breaker.
    assert shown == [("a", BreakerState.CLOSED)] * 3 + [("a", BreakerState.OPEN)]


def test_without_error_rate_there_are_no_breakers() -> None:
    f = fleet()
    gates = TierGates(f)
    for _ in range(10):
        gates.record("a", 1.0, ok=False)
    assert not gates.has_breakers
    assert gates.breaker_state("a", 1.0) is None
    assert CascadeWalk(("a", "b"), gates, f.fallback).next(1.0) == WalkStep("a", False, ())
