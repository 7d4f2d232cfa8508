"""One ``tiergate simulate`` run end to end: the fleet and workload in, the result and its
files out."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tiergate.errors import SimulationError
from tiergate.perf import model_named
from tiergate.sim.accounting import build_result, managed_prices
from tiergate.sim.outputs import (
    REQUESTS_CSV,
    RequestsCsv,
    SimProgress,
    write_report_html,
    write_summary_json,
)
from tiergate.sim.request import SimRequest
from tiergate.sim.result import SimResult
from tiergate.sim.run import Fidelity, SimOptions, Simulation
from tiergate.sim.workload import WorkloadOptions, build_workload
from tiergate.spec import Fleet, load_fleet


@dataclass(frozen=True, slots=True)
class SessionOptions:
    fleet: Path
    workload: WorkloadOptions
    seed: int = 0
    fidelity: Fidelity = "iteration"
    utc_start: datetime = field(default_factory=lambda: datetime(2026, 11, 2, tzinfo=UTC))
    output_dir: Path | None = None
    requests_csv: bool = False
    progress: bool = False


def run_session(options: SessionOptions) -> SimResult:
    """Load, check, run and write out one simulation."""
    fleet = load_fleet(options.fleet)
    check_simulable(fleet)
    workload = build_workload(
        options.workload,
        fleet.simulation.workload,
        seed=options.seed,
        utc_start=options.utc_start,
        spec_dir=options.fleet.parent,
    )
    simulation = Simulation(
        fleet,
        SimOptions(
            seed=options.seed,
            fidelity=options.fidelity,
            utc_start=options.utc_start,
            horizon_s=workload.horizon_s,
        ),
    )
    with contextlib.ExitStack() as stack:
        if options.requests_csv and options.output_dir is not None:
            options.output_dir.mkdir(parents=True, exist_ok=True)
            writer = stack.enter_context(RequestsCsv(options.output_dir / REQUESTS_CSV))
            simulation.on_done = _csv_row(writer)
        if options.progress and workload.horizon_s is not None:
            bar = stack.enter_context(SimProgress(0.0, workload.horizon_s))
            bar.attach(simulation.loop, lambda: simulation.arrived, workload.horizon_s / 200)
        started = time.perf_counter()
        end = simulation.run(workload.requests)
        wall = time.perf_counter() - started
    result = build_result(simulation, end=end, wall_s=wall, trace=workload.description)
    if options.output_dir is not None:
        write_summary_json(result, options.output_dir)
        write_report_html(result, options.output_dir)
    return result


def check_simulable(fleet: Fleet) -> None:
    """Refuse, with what to add, a fleet whose tiers the simulator cannot model."""
    deployed = {deployment.tier for deployment in fleet.deployments}
    managed = []
    for tier in fleet.cascade:
        if tier.name in deployed:
            try:
                model_named(tier.model)
            except KeyError as exc:
                raise SimulationError(
                    f"{fleet.source}: tier {tier.name}: no performance model for its model "
                    f"({exc.args[0]})"
                ) from None
        elif tier.provider == "bedrock" or tier.name in fleet.simulation.managed:
            managed.append(tier.name)
        else:
            raise SimulationError(
                f"{fleet.source}: tier {tier.name} ({tier.provider}) has no deployments entry: "
                f"simulate needs its GPUs (deployments: [{{tier: {tier.name}, gpu: H100, tp: 2, "
                "replicas: 2}]), or, for a managed API behind an OpenAI-compatible URL, a "
                f"simulation.managed.{tier.name} entry"
            )
    managed_prices(fleet, managed)  # a model without a known price is refused here


def _csv_row(writer: RequestsCsv) -> Callable[[SimRequest], None]:
    def row(request: SimRequest) -> None:
        reasons = [f"{tier}:{reason}" for tier, reason in request.fallbacks or ()]
        writer.write(
            request.arrival,
            request.tier or "",
            request.status,
            request.prompt_tokens,
            request.output_tokens,
            request.ttft_s,
            request.e2e_s or 0.0,
            request.itl_s,
            request.attempts,
            reasons,
        )

    return row
