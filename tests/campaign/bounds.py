"""How far a campaign goes: a fixed number of examples, derandomized, every one checked.

The campaigns run in CI, so they are bounded in count (no deadline: a slow example is not a
failure, a wrong answer is) and repeat the same examples on every run.
"""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings


def campaign_settings(max_examples: int) -> settings:
    """Hypothesis settings for a bounded, repeatable campaign that reports every failure."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # every example is checked: nothing to shrink
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
