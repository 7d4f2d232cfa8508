"""The report's four plots, drawn with matplotlib into PNG bytes.

Figures are made with ``matplotlib.figure.Figure`` on an explicit Agg canvas, never through
``pyplot``: pyplot keeps every figure in a process-wide registry and picks a backend from the
environment (a display may not exist), while an Agg canvas renders off-screen with no shared
state. The PNG is written without the ``Software`` text chunk, the one part of the file that
would change with the matplotlib version, so that the same result gives the same bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from dataclasses import dataclass

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from tiergate.sim.result import SimResult
from tiergate.sim.stats import LogHistogram, TimeSeries

SIZE_IN = (9.0, 4.2)
DPI = 100
# Time units for the x axis, the largest that keeps a run's span above about three of them.
TIME_UNITS = (("days", 86_400.0), ("h", 3600.0), ("min", 60.0), ("s", 1.0))


@dataclass(frozen=True, slots=True)
class Plot:
    """One plot of the report: its title, a sentence on how to read it, and the PNG."""

    title: str
    caption: str
    png: bytes


def _time_unit(span_s: float) -> tuple[str, float]:
    for name, seconds in TIME_UNITS:
        if span_s >= 3 * seconds:
            return name, seconds
    return "s", 1.0


def _color(index: int) -> str:
    return f"C{index % 10}"


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _figure(rows: int = 1) -> tuple[Figure, list[Axes]]:
    figure = Figure(figsize=(SIZE_IN[0], SIZE_IN[1] * (1 + 0.6 * (rows - 1))), layout="tight")
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False)
    return figure, [row[0] for row in axes]


def _no_data(ax: Axes) -> None:
    ax.text(0.5, 0.5, "no samples", transform=ax.transAxes, ha="center", va="center")


class _Clock:
    """Virtual seconds on the x axis, in hours (or minutes, days) since the start."""

    def __init__(self, result: SimResult) -> None:
        self.start_s = result.start_s
        self.unit, self.seconds = _time_unit(result.duration_s)

    def x(self, series: TimeSeries) -> list[float]:
        return [(t - self.start_s) / self.seconds for t in series.times()]

    def label(self, ax: Axes) -> None:
        ax.set_xlabel(f"virtual time since start ({self.unit})")


def _steps(clock: _Clock, series: TimeSeries) -> tuple[list[float], list[float]]:
    """The points of a step line: each sample holds for its whole step, the last one too."""
    x = clock.x(series)
    y = list(series.values)
    x.append(x[-1] + series.step_s / clock.seconds)
    y.append(y[-1])
    return x, y


def _lines(
    ax: Axes,
    clock: _Clock,
    series: Mapping[str, TimeSeries],
    colors: Mapping[str, str],
    labels: Mapping[str, str] | None = None,
    *,
    steps: bool = True,
) -> bool:
    """One line per series: steps for states held between samples (replicas, capacity),
    straight segments for running totals (cost)."""
    drawn = False
    for name, values in series.items():
        if len(values):
            label = name if labels is None else labels.get(name, name)
            color = colors.get(name, "grey")
            if steps:
                x, y = _steps(clock, values)
                ax.step(x, y, where="post", color=color, label=label)
            else:
                ax.plot(clock.x(values), values.values, color=color, label=label)
            drawn = True
    return drawn


def arrivals_plot(result: SimResult, colors: Mapping[str, str]) -> Plot:
    """Arrivals per second against what each tier's ready replicas can serve."""
    figure, (ax,) = _figure()
    clock = _Clock(result)
    series = result.series
    # A managed API's quota dwarfs the GPU tiers: the plot is scaled to the arrivals and the
    # GPU tiers, and a managed tier above that is named as off scale.
    peaks = [max(series.arrivals_per_s.values, default=0.0)]
    managed = {tier.name for tier in result.tiers if tier.kind == "managed"}
    peaks.extend(
        max(values.values, default=0.0)
        for name, values in series.capacity_per_s.items()
        if name not in managed
    )
    top = max(peaks) * 1.15
    labels = {}
    for name, values in series.capacity_per_s.items():
        peak = max(values.values, default=0.0)
        off = top > 0 and peak > top
        labels[name] = f"{name} capacity" + (f" (off scale: {peak:g}/s)" if off else "")
    drawn = _lines(ax, clock, series.capacity_per_s, colors, labels)
    if len(series.arrivals_per_s):
        x, y = _steps(clock, series.arrivals_per_s)
        ax.step(x, y, where="post", color="black", label="arrivals")
        drawn = True
    if any(label.endswith("/s)") for label in labels.values()):
        ax.set_ylim(0, top)
    if drawn:
        ax.legend(loc="upper right", fontsize="small")
    else:
        _no_data(ax)
    ax.set_ylabel("requests / s")
    clock.label(ax)
    return Plot(
        "Arrivals against serving capacity",
        "Requests arriving per second (black) and the requests per second each tier's ready "
        "replicas serve at saturation; arrivals above a tier's line spill over to the next tier.",
        _png(figure),
    )


def fleet_plot(result: SimResult, colors: Mapping[str, str]) -> Plot:
    """Ready replicas per tier (top) and nodes per tier and per pool (bottom)."""
    figure, (top, bottom) = _figure(rows=2)
    clock = _Clock(result)
    series = result.series
    if _lines(top, clock, series.replicas, colors):
        top.legend(loc="upper right", fontsize="small")
    else:
        _no_data(top)
    top.set_ylabel("replicas")
    drawn = _lines(bottom, clock, series.nodes, colors)
    for index, (pool, values) in enumerate(series.pool_nodes.items()):
        if len(values):
            bottom.step(
                clock.x(values),
                values.values,
                where="post",
                linestyle="--",
                color=_color(len(colors) + index),
                label=f"pool {pool}",
            )
            drawn = True
    if drawn:
        bottom.legend(loc="upper right", fontsize="small")
    else:
        _no_data(bottom)
    bottom.set_ylabel("nodes")
    clock.label(bottom)
    return Plot(
        "Replicas and nodes",
        "Ready replicas per tier, and nodes per tier (solid) and per node pool (dashed), "
        "booting nodes included.",
        _png(figure),
    )


def cost_plot(result: SimResult, colors: Mapping[str, str]) -> Plot:
    """Cumulative cost per tier."""
    figure, (ax,) = _figure()
    clock = _Clock(result)
    costs = result.series.cost_usd
    drawn = _lines(ax, clock, costs, colors, steps=False)
    if len(costs) > 1 and drawn:
        shortest = min(costs.values(), key=len)
        total = [sum(s.values[i] for s in costs.values()) for i in range(len(shortest))]
        ax.plot(clock.x(shortest), total, color="black", linestyle="--", label="all tiers")
    if drawn:
        ax.legend(loc="upper left", fontsize="small")
    else:
        _no_data(ax)
    ax.set_ylabel("cumulative cost ($)")
    clock.label(ax)
    return Plot(
        "Cumulative cost per tier",
        "What each tier has cost since the start: GPU tiers by the second their nodes are "
        "billed (on-prem amortized by the hour), the managed API by tokens.",
        _png(figure),
    )


def ttft_plot(result: SimResult, colors: Mapping[str, str]) -> Plot:
    """The TTFT distribution per tier and of the whole fleet, with the SLO target."""
    figure, (ax,) = _figure()
    fleet = LogHistogram()
    drawn = False
    for tier in result.tiers:
        fleet.merge(tier.ttft)
        drawn |= _cdf(ax, tier.ttft, tier.name, colors.get(tier.name, "grey"))
    if len(result.tiers) > 1:
        _cdf(ax, fleet, "fleet", "black")
    target = result.slo.ttft_p95_target_s
    ax.axvline(target, color="red", linestyle="--", label=f"SLO target {target:g} s")
    ax.axhline(0.95, color="grey", linestyle=":", linewidth=1)
    if drawn:
        ax.set_xscale("log")
        # 0.2 and 3 rather than 2e-1 in TeX: latencies are read in plain seconds.
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(_minor_label))
    else:
        _no_data(ax)
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right", fontsize="small")
    ax.set_xlabel("time to first token (s)")
    ax.set_ylabel("share of requests")
    return Plot(
        "Time to first token",
        "Share of each tier's requests with a first token within a time; the SLO is met when "
        "the fleet's curve crosses 95% (dotted) left of the target (dashed).",
        _png(figure),
    )


def _minor_label(value: float, _: object) -> str:
    """Minor ticks of a log axis labelled at 2 and 5 times a power of ten, the others not."""
    if value <= 0:
        return ""
    leading = round(value / 10 ** math.floor(math.log10(value)))
    return f"{value:g}" if leading in (2, 5) else ""


def _cdf(ax: Axes, histogram: LogHistogram, label: str, color: str) -> bool:
    values, fractions = histogram.cdf()
    # A log axis cannot show zero: the first token of an instant answer.
    points = [(v, f) for v, f in zip(values, fractions, strict=True) if v > 0]
    if not points:
        return False
    # From zero at the first value, so that a tier with one distinct latency is still a line.
    x = [points[0][0]] + [v for v, _ in points]
    y = [0.0] + [f for _, f in points]
    ax.step(x, y, where="post", color=color, label=label)
    return True


def figures(result: SimResult) -> list[Plot]:
    """The report's plots, in order: arrivals against capacity, replicas and nodes,
    cumulative cost, TTFT CDF. Each tier keeps its colour across them."""
    colors = {tier.name: _color(index) for index, tier in enumerate(result.tiers)}
    return [
        arrivals_plot(result, colors),
        fleet_plot(result, colors),
        cost_plot(result, colors),
        ttft_plot(result, colors),
    ]
