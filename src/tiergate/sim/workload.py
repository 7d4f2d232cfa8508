"""The workload of one ``tiergate simulate`` run: a trace replayed, or a synthetic week.

A replay is the trace's window (``start_s``, ``duration_s``) at ``rate`` times its own rate
(:func:`tiergate.sim.workloads.scale_rate`: bursts and lulls keep their length). A synthetic
run (``days``) draws arrivals from an hour-of-week profile at a mean rate (default: the
trace's own, times ``rate``) and each request's lengths from the trace. Both stream: nothing
per request is held.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tiergate.errors import SimulationError
from tiergate.sim.synthetic import (
    hour_of_week_profile,
    lengths_from_trace,
    normalise_profile,
    read_profile,
    synthetic_requests,
)
from tiergate.sim.workloads import TraceRequest, read_trace, scale_rate, slice_trace
from tiergate.spec.simulation import WorkloadShape

DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class WorkloadOptions:
    trace: Path
    start_s: float = 0.0
    duration_s: float | None = None
    days: float | None = None
    rate: float = 1.0
    mean_rate: float | None = None  # synthetic: requests per second on average
    profile: Path | None = None


@dataclass(frozen=True, slots=True)
class Workload:
    requests: Iterator[TraceRequest]
    horizon_s: float | None  # how long the run lasts; None: until the trace ends
    description: str


def build_workload(
    options: WorkloadOptions,
    shape: WorkloadShape,
    *,
    seed: int,
    utc_start: datetime,
    spec_dir: Path,
) -> Workload:
    """The requests of one run, as ``options`` and the fleet's ``simulation.workload`` say."""
    if options.rate <= 0:
        raise SimulationError(f"--rate must be > 0, got {options.rate:g}")
    if options.days is None:
        window = slice_trace(
            read_trace(options.trace), start_s=options.start_s, duration_s=options.duration_s
        )
        requests = window if options.rate == 1 else scale_rate(window, options.rate, seed=seed)
        what = f"{options.trace.name} from {options.start_s:g} s"
        if options.duration_s is not None:
            what += f" for {options.duration_s:g} s"
        if options.rate != 1:
            what += f" at {options.rate:g}x its rate"
        return Workload(requests, options.duration_s, what)
    if options.days <= 0:
        raise SimulationError(f"--days must be > 0, got {options.days:g}")
    lengths = lengths_from_trace(read_trace(options.trace))
    if not lengths.prompts:
        raise SimulationError(f"{options.trace}: no request to draw lengths from")
    mean_rate = options.mean_rate
    if mean_rate is None:
        mean_rate = _trace_rate(options.trace) * options.rate
    elif options.rate != 1:
        mean_rate *= options.rate
    profile = _profile(options.profile, shape, spec_dir)
    duration = options.days * DAY_S
    hour = utc_start.weekday() * 24 + utc_start.hour
    requests = synthetic_requests(
        profile, mean_rate, duration, lengths, seed=seed, start_hour_of_week=hour
    )
    what = (
        f"synthetic {options.days:g} days at {mean_rate:g} requests/s on average "
        f"(lengths from {options.trace.name})"
    )
    return Workload(requests, duration, what)


def _profile(given: Path | None, shape: WorkloadShape, spec_dir: Path) -> tuple[float, ...]:
    if given is not None:
        return read_profile(given)
    if shape.profile is not None:
        return normalise_profile(shape.profile)
    if shape.profile_file is not None:
        path = Path(shape.profile_file)
        return read_profile(path if path.is_absolute() else spec_dir / path)
    return hour_of_week_profile()


def _trace_rate(trace: Path) -> float:
    """The trace's mean arrival rate: requests over the span of their arrivals."""
    count, last = 0, 0.0
    for request in read_trace(trace):
        count += 1
        last = request.arrival_s
    if count < 2 or last <= 0:
        raise SimulationError(f"{trace}: too few requests to know its rate; give --mean-rate")
    return count / last
