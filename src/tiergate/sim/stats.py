"""The statistics a simulation keeps while it runs: latency histograms and sampled time series.

A week of a busy fleet is millions of requests and hundreds of millions of tokens; the simulator
cannot keep every latency to sort at the end. :class:`LogHistogram` is a fixed-memory quantile
sketch in the manner of DDSketch (Masson, Rim and Lee, "DDSketch: a fast and fully-mergeable
quantile sketch with relative-error guarantees", VLDB 2019): log-spaced buckets about 1% wide,
so that any quantile is known within 0.5% of its value, whatever the number of samples, and two
sketches merge by adding their counts. :class:`TimeSeries` holds values sampled on a fixed step
of virtual time (the fleet's replicas, nodes, capacity, cost) for the report's plots.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from itertools import accumulate
from typing import Any

# Latencies from 0.1 ms (an inter-token gap on a fast GPU) to 27.8 hours (a request queued for
# a day): nothing a simulation measures in seconds falls outside, and the rare value that does
# is still counted (in an end bucket, at the exact minimum or maximum seen).
DEFAULT_LOW_S = 1e-4
DEFAULT_HIGH_S = 1e5
# Relative accuracy of every value read back: buckets are (1 + a) / (1 - a) - 1 ≈ 1.005% wide.
DEFAULT_ACCURACY = 0.005


class LogHistogram:
    """Counts of values in log-spaced buckets; quantiles within ``accuracy`` of their value.

    Bucket ``i`` (1-based) holds ``[low * g**(i-1), low * g**i)`` with ``g = (1 + a) / (1 - a)``,
    and reads back as ``2 * low * g**i / (1 + g)``, which is within ``a`` (relative) of every
    value in the bucket. Values below ``low`` (zero included) and at or above ``high`` are
    counted in two end buckets that read back as the exact minimum and maximum seen. Memory is
    fixed: about 2,100 counts for the default range. Mutable: :meth:`add` is the hot path of
    the simulator, called once per request (TTFT) and once per token batch (ITL).
    """

    __slots__ = (
        "_counts",
        "_gamma",
        "_high",
        "_inv_log_gamma",
        "_log_low",
        "_low",
        "_max",
        "_min",
        "_top",
        "accuracy",
        "count",
        "total",
    )

    def __init__(
        self,
        low: float = DEFAULT_LOW_S,
        high: float = DEFAULT_HIGH_S,
        accuracy: float = DEFAULT_ACCURACY,
    ) -> None:
        if not 0 < low < high:
            raise ValueError(f"need 0 < low < high, got low={low}, high={high}")
        if not 0 < accuracy < 1:
            raise ValueError(f"accuracy must be in (0, 1), got {accuracy}")
        gamma = (1 + accuracy) / (1 - accuracy)
        self.accuracy = accuracy
        self._gamma = gamma
        self._low = low
        self._high = high
        self._log_low = math.log(low)
        self._inv_log_gamma = 1 / math.log(gamma)
        # One bucket more than the range needs, so that rounding in the log of a value just
        # under ``high`` cannot index past the last log bucket.
        self._top = math.ceil(math.log(high / low) * self._inv_log_gamma) + 1
        self._counts = [0] * (self._top + 2)  # [underflow, 1 .. top, overflow]
        self.count = 0
        self.total = 0.0
        self._min = math.inf
        self._max = -math.inf

    def add(self, value: float) -> None:
        """Count one value (seconds; negative values and NaN are refused)."""
        if value >= self._high:
            self._counts[-1] += 1
        elif value >= self._low:
            self._counts[int((math.log(value) - self._log_low) * self._inv_log_gamma) + 1] += 1
        elif value >= 0:
            self._counts[0] += 1
        else:
            raise ValueError(f"a latency must be a number >= 0, got {value}")
        self.count += 1
        self.total += value
        # Comparisons, not min() and max(): this runs once per token batch.
        if value < self._min:  # noqa: PLR1730
            self._min = value
        if value > self._max:  # noqa: PLR1730
            self._max = value

    def add_many(self, value: float, count: int) -> None:
        """Count ``count`` equal values at once (the gaps between the tokens of one batch)."""
        if count <= 0:
            if count == 0:
                return
            raise ValueError(f"count must be >= 0, got {count}")
        if value >= self._high:
            self._counts[-1] += count
        elif value >= self._low:
            self._counts[int((math.log(value) - self._log_low) * self._inv_log_gamma) + 1] += count
        elif value >= 0:
            self._counts[0] += count
        else:
            raise ValueError(f"a latency must be a number >= 0, got {value}")
        self.count += count
        self.total += value * count
        # Comparisons, not min() and max(): this runs once per token batch.
        if value < self._min:  # noqa: PLR1730
            self._min = value
        if value > self._max:  # noqa: PLR1730
            self._max = value

    def merge(self, other: LogHistogram) -> None:
        """Add ``other``'s counts to this histogram (both must have the same buckets)."""
        if (other._low, other._high, other.accuracy) != (self._low, self._high, self.accuracy):
            raise ValueError("cannot merge histograms with different buckets")
        counts = self._counts
        for index, count in enumerate(other._counts):
            if count:
                counts[index] += count
        self.count += other.count
        self.total += other.total
        self._min = min(self._min, other._min)
        self._max = max(self._max, other._max)

    def copy(self) -> LogHistogram:
        """An independent histogram with the same counts."""
        twin = LogHistogram(self._low, self._high, self.accuracy)
        twin.merge(self)
        return twin

    @property
    def mean(self) -> float | None:
        """The exact mean of the values counted; None when there are none."""
        return self.total / self.count if self.count else None

    @property
    def min(self) -> float | None:
        return self._min if self.count else None

    @property
    def max(self) -> float | None:
        return self._max if self.count else None

    def _value(self, index: int) -> float:
        """What a value in bucket ``index`` reads back as."""
        if index == 0:
            return self._min
        if index > self._top:
            return self._max
        gamma = self._gamma
        value = 2 * self._low * gamma**index / (1 + gamma)
        # The exact extremes are known; a bucket's reading must not go beyond them.
        return min(max(value, self._min), self._max)

    def quantile(self, q: float) -> float | None:
        """The ``q``-quantile (0 ≤ q ≤ 1), interpolated between order statistics as
        ``numpy.quantile`` does by default; within ``accuracy`` of the exact value, and exact
        for q = 0 and q = 1 (the minimum and maximum). None when nothing was counted."""
        if not 0 <= q <= 1:
            raise ValueError(f"q must be in [0, 1], got {q}")
        if not self.count:
            return None
        cumulative = list(accumulate(self._counts))
        position = q * (self.count - 1)
        rank = math.floor(position)
        low = self._order_statistic(cumulative, rank)
        if position == rank:
            return low
        high = self._order_statistic(cumulative, rank + 1)
        return low + (position - rank) * (high - low)

    def _order_statistic(self, cumulative: list[int], rank: int) -> float:
        """The ``rank``-th smallest value (0-based): exact for the first and the last."""
        if rank == 0:
            return self._min
        if rank >= self.count - 1:
            return self._max
        return self._value(bisect_right(cumulative, rank))

    def quantiles(self, qs: tuple[float, ...] = (0.5, 0.95, 0.99)) -> tuple[float | None, ...]:
        """Several quantiles at once."""
        return tuple(self.quantile(q) for q in qs)

    def fraction_at_most(self, x: float) -> float | None:
        """The share of values ≤ ``x`` (the SLO attainment for a target ``x``), exact except in
        the one bucket that holds ``x``, whose values count when its reading is ≤ ``x``. None
        when nothing was counted."""
        if not self.count:
            return None
        within = sum(c for i, c in enumerate(self._counts) if c and self._value(i) <= x)
        return within / self.count

    def cdf(self) -> tuple[list[float], list[float]]:
        """The empirical distribution for a plot: for each non-empty bucket, its reading and the
        share of values at or below it (increasing; the last share is 1)."""
        values: list[float] = []
        fractions: list[float] = []
        seen = 0
        for index, count in enumerate(self._counts):
            if count:
                seen += count
                values.append(self._value(index))
                fractions.append(seen / self.count)
        return values, fractions

    def to_json(self) -> dict[str, Any]:
        """Count, mean, extremes and the quantiles the outputs show, in seconds."""
        p50, p95, p99 = self.quantiles()
        return {
            "count": self.count,
            "meanSeconds": _round(self.mean),
            "p50Seconds": _round(p50),
            "p95Seconds": _round(p95),
            "p99Seconds": _round(p99),
            "maxSeconds": _round(self.max),
        }


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


class TimeSeries:
    """Values sampled every ``step_s`` seconds of virtual time from ``start_s``: sample ``i``
    is the value at ``start_s + i * step_s``. Append-only, in a compact ``array('d')``."""

    __slots__ = ("start_s", "step_s", "values")

    def __init__(self, start_s: float, step_s: float) -> None:
        if step_s <= 0:
            raise ValueError(f"step_s must be > 0, got {step_s}")
        self.start_s = start_s
        self.step_s = step_s
        self.values = array("d")

    def append(self, value: float) -> None:
        """The value at the next point of the grid."""
        self.values.append(value)

    def fill_to(self, now: float, value: float) -> None:
        """``value`` at every point of the grid up to ``now`` not yet sampled (a state that
        held since the last sample: a replica count between two scaling decisions)."""
        points = math.floor((now - self.start_s) / self.step_s + 1e-9) + 1
        missing = points - len(self.values)
        if missing > 0:
            self.values.extend([value] * missing)

    def times(self) -> list[float]:
        """The virtual time of each sample."""
        return [self.start_s + i * self.step_s for i in range(len(self.values))]

    @property
    def last(self) -> float | None:
        return self.values[-1] if self.values else None

    def __len__(self) -> int:
        return len(self.values)

    def to_json(self) -> list[float]:
        """The samples, to six significant digits (the grid is in the result's series)."""
        return [float(f"{v:.6g}") for v in self.values]
