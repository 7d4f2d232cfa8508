"""The error-rate breaker: when it opens, how it probes, and how its window forgets."""

from __future__ import annotations

import pytest

from tiergate.gateway.breaker import Breaker, BreakerState
from tiergate.spec import Threshold
from tiergate.spec.comparator import Operator
from tiergate.spec.fleet import BreakerSettings

SETTINGS = BreakerSettings(window_s=60.0, min_requests=4, cooldown_s=30.0)


def record(breaker: Breaker, now: float, ok: int = 0, failed: int = 0) -> None:
    for _ in range(ok):
        breaker.record(now, ok=True)
    for _ in range(failed):
        breaker.record(now, ok=False)


def tripped(now: float = 0.0) -> Breaker:
    """A breaker that opened at ``now`` after four failures."""
    breaker = Breaker(Threshold(">", 0.1), SETTINGS)
    record(breaker, now, failed=4)
    assert breaker.state(now) is BreakerState.OPEN
    return breaker


@pytest.mark.parametrize(
    ("operator", "expected"), [(">", BreakerState.CLOSED), (">=", BreakerState.OPEN)]
)
def test_error_rate_exactly_at_the_limit_opens_only_with_ge(
    operator: Operator, expected: BreakerState
) -> None:
    breaker = Breaker(Threshold(operator, 0.25), SETTINGS)
    record(breaker, 1.0, ok=3, failed=1)
    assert breaker.error_rate(1.0) == 0.25
    assert breaker.state(1.0) is expected
    assert breaker.try_acquire(1.0) is (expected is BreakerState.CLOSED)


def test_error_rate_just_over_the_limit_opens() -> None:
    breaker = Breaker(Threshold(">", 0.25), SETTINGS)
    record(breaker, 1.0, ok=2, failed=1)
    assert breaker.state(1.0) is BreakerState.CLOSED  # 3 outcomes: below min_requests
    record(breaker, 1.0, failed=1)
    assert breaker.state(1.0) is BreakerState.OPEN
    assert not breaker.try_acquire(1.0)


def test_failures_below_min_requests_never_open() -> None:
    breaker = Breaker(Threshold(">", 0.1), SETTINGS)
    record(breaker, 5.0, failed=3)
    assert breaker.error_rate(5.0) is None
    assert breaker.state(5.0) is BreakerState.CLOSED
    assert breaker.try_acquire(5.0)


def test_failures_older_than_the_window_no_longer_count() -> None:
    breaker = Breaker(Threshold(">", 0.5), SETTINGS)
    record(breaker, 0.0, failed=3)
    assert breaker.error_rate(59.0) is None  # 3 outcomes in the window: too few to judge
    # Just past the window: the old failures are gone, so 4 successes give a rate of 0, not 3/7.
    record(breaker, 60.5, ok=4)
    assert breaker.error_rate(60.5) == 0.0
    record(breaker, 61.0, failed=1)
    assert breaker.state(61.0) is BreakerState.CLOSED


def test_failures_inside_the_window_still_count() -> None:
    breaker = Breaker(Threshold(">", 0.5), SETTINGS)
    record(breaker, 0.0, failed=3)
    record(breaker, 58.0, ok=1)
    assert breaker.error_rate(58.0) == 0.75
    assert breaker.state(58.0) is BreakerState.OPEN


def test_window_slides_bucket_by_bucket() -> None:
    breaker = Breaker(Threshold(">", 0.9), SETTINGS)
    for second in range(60):
        breaker.record(float(second), ok=second % 2 == 0)
    assert breaker.error_rate(59.5) == 0.5
    # Thirty seconds on, the first half has expired: 15 of those 30 outcomes were failures.
    assert breaker.error_rate(89.5) == 0.5
    record(breaker, 89.5, ok=30)
    assert breaker.error_rate(89.5) == 0.25


def test_cooldown_turns_open_into_half_open() -> None:
    breaker = tripped(now=10.0)
    assert breaker.state(39.9) is BreakerState.OPEN
    assert not breaker.try_acquire(39.9)
    assert breaker.state(40.0) is BreakerState.HALF_OPEN


def test_half_open_lets_exactly_one_probe_through() -> None:
    breaker = tripped()
    assert breaker.try_acquire(30.0)
    assert not breaker.try_acquire(30.0)
    assert not breaker.try_acquire(45.0)
    assert breaker.state(45.0) is BreakerState.HALF_OPEN


def test_successful_probe_closes_with_an_empty_window() -> None:
    breaker = tripped()
    assert breaker.try_acquire(30.0)
    breaker.record(31.0, ok=True)
    assert breaker.state(31.0) is BreakerState.CLOSED
    assert breaker.error_rate(31.0) is None
    # The failures that tripped it are gone: three more do not re-open it.
    record(breaker, 32.0, failed=3)
    assert breaker.state(32.0) is BreakerState.CLOSED
    assert breaker.try_acquire(32.0)


def test_failed_probe_reopens_and_restarts_the_cooldown() -> None:
    breaker = tripped()
    assert breaker.try_acquire(30.0)
    breaker.record(35.0, ok=False)
    assert breaker.state(35.0) is BreakerState.OPEN
    assert not breaker.try_acquire(64.9)
    assert breaker.state(65.0) is BreakerState.HALF_OPEN
    assert breaker.try_acquire(65.0)


def test_outcomes_recorded_while_open_are_ignored() -> None:
    breaker = tripped()
    # Requests that were in flight when it opened come back fine; the breaker stays open...
    record(breaker, 5.0, ok=10)
    assert breaker.state(5.0) is BreakerState.OPEN
    # ...and they are not mistaken for the probe once the cooldown has passed.
    breaker.record(31.0, ok=True)
    assert breaker.state(31.0) is BreakerState.HALF_OPEN
    assert breaker.try_acquire(31.0)
    assert not breaker.try_acquire(31.0)


def test_release_lets_a_new_probe_through() -> None:
    breaker = tripped()
    assert breaker.try_acquire(30.0)
    breaker.release(30.0)
    assert breaker.state(30.0) is BreakerState.HALF_OPEN
    assert breaker.try_acquire(30.5)
    assert not breaker.try_acquire(30.5)
    breaker.record(31.0, ok=True)
    assert breaker.state(31.0) is BreakerState.CLOSED


def test_release_while_closed_changes_nothing() -> None:
    breaker = Breaker(Threshold(">", 0.1), SETTINGS)
    assert breaker.try_acquire(1.0)
    breaker.release(1.0)
    record(breaker, 1.0, failed=4)
    assert breaker.state(1.0) is BreakerState.OPEN


def test_big_clock_jump_empties_the_window() -> None:
    breaker = Breaker(Threshold(">", 0.5), SETTINGS)
    record(breaker, 100.0, failed=3)
    later = 100.0 + 1e9
    assert breaker.error_rate(later) is None
    record(breaker, later, ok=3, failed=1)
    assert breaker.error_rate(later) == 0.25
    assert breaker.state(later) is BreakerState.CLOSED


def test_jump_of_just_under_a_window_keeps_the_newest_buckets() -> None:
    breaker = Breaker(Threshold(">", 0.5), SETTINGS)
    record(breaker, 0.0, ok=2)
    record(breaker, 30.0, failed=2)
    # At 75 s the successes at 0 s have expired but the failures at 30 s have not.
    record(breaker, 75.0, ok=2)
    assert breaker.error_rate(75.0) == 0.5


def test_big_clock_jump_after_opening_allows_a_probe() -> None:
    breaker = tripped(now=1.0)
    assert breaker.state(1e12) is BreakerState.HALF_OPEN
    assert breaker.try_acquire(1e12)


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="invalid breaker settings"):
        Breaker(Threshold(">", 0.1), BreakerSettings(window_s=0.0, min_requests=1, cooldown_s=1.0))
