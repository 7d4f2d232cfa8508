"""``tiergate simulate``: what a fleet costs and whether it meets its SLO, in virtual time."""

from __future__ import annotations

from pathlib import Path

import click

from tiergate.cli.options import fleet_file_option, format_option


@click.command("simulate")
@fleet_file_option(help="The fleet spec (the same file serve and scale read).", path_type=Path)
@click.option(
    "--trace",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="An Azure LLM inference trace CSV or a Mooncake JSONL trace: replayed, or (with "
    "--days) the source of a synthetic week's request lengths.",
)
@click.option(
    "--start", "start_s", type=float, default=0.0, show_default=True, help="Seconds into the trace."
)
@click.option(
    "--duration",
    "duration_s",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds of trace to replay  [default: all]",
)
@click.option(
    "--days",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="A synthetic run of this many days (hour-of-week profile, lengths from --trace).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Times the trace's rate (with --days: times the mean rate).",
)
@click.option(
    "--mean-rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="With --days: requests per second on average  [default: the trace's]",
)
@click.option(
    "--profile",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="With --days: 168 hour-of-week weights (hour 0: Monday 00:00 UTC).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--fidelity",
    type=click.Choice(["iteration", "request"]),
    default="iteration",
    show_default=True,
    help="iteration: vLLM's scheduler step by step; request: a fast analytic model per replica.",
)
@click.option(
    "--utc-start",
    default="2026-11-02T00:00:00Z",
    show_default=True,
    help="The UTC time virtual 0 stands for (cron schedules, disruption budgets, the "
    "week's profile).",
)
@click.option(
    "-o",
    "--output",
    "output_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write DIR/summary.json and DIR/report.html.",
)
@click.option(
    "--requests-csv", is_flag=True, help="Also write DIR/requests.csv, one row per request."
)
@format_option()
def command(
    *,
    fleet_path: Path,
    trace: Path,
    start_s: float,
    duration_s: float | None,
    days: float | None,
    rate: float,
    mean_rate: float | None,
    profile: Path | None,
    seed: int,
    fidelity: str,
    utc_start: str,
    output_dir: Path | None,
    requests_csv: bool,
    output_format: str,
) -> None:  # fmt: skip
    """Simulate the fleet on a trace: cost per tier, GPU-hours, latency and the SLO.

    The gateway's cascade, breaker, health checks and spillover, the scaler in either mode,
    the node pools (launch, image pull, weight load, spot interruptions, consolidation within
    disruption budgets) and the managed API run in virtual time on the live code's policies.
    Exits 0 with the summary, 2 on bad input (the message names it).
    """
    from datetime import datetime

    from tiergate.cli import exits
    from tiergate.cli.console import console as make_console
    from tiergate.errors import TiergateError

    if duration_s is not None and days is not None:
        raise click.UsageError("give --duration or --days, not both")
    if requests_csv and output_dir is None:
        raise click.UsageError("--requests-csv writes into the -o/--output directory: give it")
    try:
        start = datetime.fromisoformat(utc_start.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--utc-start'") from exc
    if start.tzinfo is None:
        raise click.BadParameter("give a time zone (Z for UTC)", param_hint="'--utc-start'")
    from tiergate.sim.session import SessionOptions, run_session
    from tiergate.sim.workload import WorkloadOptions

    console = make_console(stderr=output_format == "json")
    options = SessionOptions(
        fleet=fleet_path,
        workload=WorkloadOptions(trace, start_s, duration_s, days, rate, mean_rate, profile),
        seed=seed,
        fidelity="request" if fidelity == "request" else "iteration",
        utc_start=start,
        output_dir=output_dir,
        requests_csv=requests_csv,
        progress=make_console(stderr=True).is_terminal,
    )
    try:
        result = run_session(options)
    except TiergateError as exc:
        exits.fail("simulate", exc)
    if output_format == "json":
        import json

        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        from tiergate.sim.outputs import render_summary

        console.print(render_summary(result))
