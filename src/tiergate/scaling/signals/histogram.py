"""PromQL's ``histogram_quantile``, over cumulative bucket counts (or their rates)."""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Mapping


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The ``q``-quantile (0-1) of a histogram given as cumulative counts by upper bound ``le``.

    Computed as Prometheus does: buckets sorted by bound and made monotonic, linear
    interpolation inside the bucket holding the rank, the lower bound of the first bucket taken
    as 0, and a rank in the ``+Inf`` bucket answered with the largest finite bound. None where
    PromQL answers NaN: fewer than two buckets, no ``+Inf`` bucket, or no observations (no
    traffic is "unknown", never a latency of 0).
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within 0 and 1, got {q}")
    bounds = sorted(buckets)
    if len(bounds) < 2 or bounds[-1] != math.inf:
        return None
    # Bucket counts summed over replicas, or rates over slightly different spans, can dip;
    # Prometheus evens them out the same way.
    counts = list(itertools.accumulate((buckets[bound] for bound in bounds), max))
    observations = counts[-1]
    if not observations > 0:  # also NaN
        return None
    rank = q * observations
    index = bisect.bisect_left(counts, rank)
    if index >= len(bounds) - 1:
        return bounds[-2]
    if index == 0 and bounds[0] <= 0:
        return bounds[0]
    start = bounds[index - 1] if index else 0.0
    below = counts[index - 1] if index else 0.0
    inside = counts[index] - below
    if inside <= 0:  # q = 0 over an empty first bucket
        return start
    return start + (bounds[index] - start) * (rank - below) / inside
