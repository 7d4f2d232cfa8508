"""Cumulative cost over time, per tier: the simulator's cost plot.

:func:`cost_at` is the pure O(nodes) answer for one time; :func:`cumulative` the same for a
whole grid of times at once with numpy (the ``sim`` extra), with the very rules of
:func:`tiergate.cost.ec2.billed_seconds`, so that its last point is the bill. Managed tiers
accrue with their requests: :func:`cumulative_events` sums per-request costs on the grid.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from tiergate.cost.ec2 import MINIMUM_BILLED_S, SECOND_SLACK, NodeUsage, node_cost

FloatArray = npt.NDArray[np.float64]
_CELLS = 1 << 20  # nodes * times evaluated at once: bounds the memory of a long grid


def cost_at(nodes: Iterable[NodeUsage], t: float) -> dict[str, float]:
    """USD billed by time ``t``, per tier, for the nodes (launched after ``t``: nothing yet)."""
    out: dict[str, float] = {}
    for node in nodes:
        out[node.tier] = out.get(node.tier, 0.0) + node_cost(node, t)
    return out


def cumulative(
    nodes: Iterable[NodeUsage], times: Sequence[float] | FloatArray
) -> dict[str, FloatArray]:
    """USD billed by each of ``times``, per tier: ``cost_at`` on a grid, vectorised.

    O(nodes * times) arithmetic in numpy, evaluated in blocks of about a million cells.
    """
    grid = np.asarray(times, dtype=np.float64)
    by_tier: dict[str, list[NodeUsage]] = {}
    for node in nodes:
        by_tier.setdefault(node.tier, []).append(node)
    return {tier: _billed_usd(group, grid) for tier, group in by_tier.items()}


def cumulative_events(
    event_times: Sequence[float] | FloatArray,
    costs: Sequence[float] | FloatArray,
    times: Sequence[float] | FloatArray,
) -> FloatArray:
    """The running sum of ``costs`` (one per event, such as a managed request's price) at each
    of ``times``: an event at ``t`` counts from ``t`` on."""
    at = np.asarray(event_times, dtype=np.float64)
    order = np.argsort(at, kind="stable")
    running = np.concatenate(([0.0], np.cumsum(np.asarray(costs, dtype=np.float64)[order])))
    index = np.searchsorted(at[order], np.asarray(times, dtype=np.float64), side="right")
    result: FloatArray = running[index]
    return result


def _billed_usd(nodes: list[NodeUsage], grid: FloatArray) -> FloatArray:
    launched = np.array([node.launched_at for node in nodes])
    ended = np.array([np.inf if n.terminated_at is None else n.terminated_at for n in nodes])
    usd_per_s = np.array([node.usd_per_hour / 3600 for node in nodes])
    owned = np.array([node.capacity_type == "on-prem" for node in nodes])
    free = np.array([node.refunded for node in nodes])
    total = np.zeros(grid.shape, dtype=np.float64)
    block = max(1, _CELLS // max(1, grid.size))
    for first in range(0, len(nodes), block):
        part = slice(first, first + block)
        ran = np.minimum(grid[None, :], ended[part, None]) - launched[part, None]
        per_second = np.maximum(MINIMUM_BILLED_S, np.ceil(ran - SECOND_SLACK))
        seconds = np.where(owned[part, None], ran, per_second)
        seconds = np.where((ran >= 0) & ~free[part, None], seconds, 0.0)
        total += (seconds * usd_per_s[part, None]).sum(axis=0)
    return total
