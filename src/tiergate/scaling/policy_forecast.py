"""Short-term forecast of a rate: where it will be when a replica asked for now is ready.

Rule (tiergate; windows from Knative KPA): the *level* is the mean over the panic window (what
arrives now); the *trend* is the least-squares slope over the stable window; the forecast at
``now + horizon`` is the fitted line there, never below the level and at most ``max_growth``
times it: a trend fitted over a minute and stretched over a cold start multiplies its noise,
and a step (a burst) is not a ramp; bursts beyond that are panic mode's job. A falling trend
is not projected: forecasts bring scale-ups earlier, scale-downs wait for the stabilization
window.
The trend needs at least :data:`MIN_TREND_SAMPLES` samples spanning half the stable window, so
two noisy points cannot extrapolate a spike across a whole cold start.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MIN_TREND_SAMPLES = 3


@dataclass(frozen=True, slots=True)
class Forecast:
    """A rate now (``level``), its trend per second, and its value at the horizon."""

    level: float
    slope: float
    value: float

    @property
    def growth(self) -> float:
        """``value / level`` (≥ 1), the factor by which load is expected to grow; 1 at zero."""
        return self.value / self.level if self.level > 0 else 1.0


def forecast(
    samples: Iterable[tuple[float, float]],
    now: float,
    *,
    horizon_s: float,
    stable_window_s: float,
    panic_window_s: float,
    max_growth: float = 2.0,
) -> Forecast | None:
    """The forecast from ``(time, rate)`` samples; ``None`` without a sample in the window."""
    stable = [(t, v) for t, v in samples if now - stable_window_s < t <= now]
    if not stable:
        return None
    recent = [v for t, v in stable if t > now - panic_window_s] or [stable[-1][1]]
    level = sum(recent) / len(recent)
    slope = _slope(stable, min_span_s=stable_window_s / 2)
    if slope <= 0:
        return Forecast(level, slope, level)
    mean_t = sum(t for t, _ in stable) / len(stable)
    mean_v = sum(v for _, v in stable) / len(stable)
    fitted = mean_v + slope * (now + horizon_s - mean_t)
    return Forecast(level, slope, min(max(level, fitted), level * max_growth))


def _slope(samples: list[tuple[float, float]], *, min_span_s: float) -> float:
    """Least-squares slope; 0 with too few samples or too short a span to trust."""
    if len(samples) < MIN_TREND_SAMPLES:
        return 0.0
    times = [t for t, _ in samples]
    if max(times) - min(times) < min_span_s:
        return 0.0
    mean_t = sum(times) / len(times)
    mean_v = sum(v for _, v in samples) / len(samples)
    spread = sum((t - mean_t) ** 2 for t in times)
    covariance = sum((t - mean_t) * (v - mean_v) for t, v in samples)
    return covariance / spread
