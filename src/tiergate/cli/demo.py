"""``tiergate demo``: replay a real trace through the cascade over three emulated tiers."""

from __future__ import annotations

from pathlib import Path

import click

from tiergate.cli.options import fleet_file_option, format_option

DEFAULT_TRACE = Path("examples/traces/AzureLLMInferenceTrace_code.csv")
DEFAULT_FLEET = Path("examples/demo-fleet.yaml")


@click.command("demo")
@click.option(
    "--trace",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="An Azure-format CSV (TIMESTAMP, ContextTokens, GeneratedTokens) or Mooncake-format "
    f"JSONL trace.  [default: {DEFAULT_TRACE}]",
)
@click.option(
    "--duration",
    "duration_s",
    type=click.FloatRange(min=0, min_open=True),
    default=600.0,
    show_default=True,
    help="Seconds of trace time to replay.",
)
@click.option(
    "--start",
    "start_s",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Where in the trace to start, in seconds of trace time.",
)
@click.option(
    "--speedup",
    type=click.FloatRange(min=0, min_open=True),
    default=12.0,
    show_default=True,
    help="How much faster than the trace to replay (the emulated GPUs run as much faster).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Prompts and emulators.")
@fleet_file_option(
    dest="fleet",
    required=False,
    path_type=Path,
    help="A 3-tier fleet taking its base URLs from ${TIERGATE_DEMO_ONPREM_URL}, "
    f"${{TIERGATE_DEMO_CLOUD_URL}} and ${{TIERGATE_DEMO_API_URL}}.  [default: {DEFAULT_FLEET}]",
)
@format_option(
    "The final summary: tables, or one JSON object on stdout (the progress then goes to stderr).",
)
def command(
    *,
    trace: Path | None,
    duration_s: float,
    start_s: float,
    speedup: float,
    seed: int,
    fleet: Path | None,
    output_format: str,
) -> None:
    """Replay a real LLM trace through the 3-tier cascade, all on this machine.

    Starts three emulated vLLM tiers (on-prem H100, cloud H100 spot, a managed API), the
    gateway in front of them, and replays the trace's requests through the gateway as
    streaming chat completions. Part-way through, the on-prem tier starts failing every
    request, and later it heals. A live view shows each tier's load, latency, fallbacks and
    cost; the end shows what every tier served and what it cost against sending everything
    to the managed API. Ctrl-C stops early, with the summary so far.
    """
    import json

    from tiergate.cli import exits
    from tiergate.cli.console import console as make_console
    from tiergate.demo.report import Summary, summary_json
    from tiergate.demo.run import main
    from tiergate.errors import TiergateError

    def show_json(summary: Summary) -> None:
        click.echo(json.dumps(summary_json(summary), indent=2))

    # With --format json stdout holds only the summary: the progress goes to stderr.
    console = make_console(stderr=output_format == "json")
    try:
        status = main(
            trace=_locate(trace, DEFAULT_TRACE),
            fleet=_locate(fleet, DEFAULT_FLEET),
            duration_s=duration_s,
            speedup=speedup,
            seed=seed,
            start_s=start_s,
            console=console,
            # Off a terminal the live view prints plain lines instead of redrawing.
            live=console.is_terminal,
            show=show_json if output_format == "json" else None,
        )
    except TiergateError as exc:
        exits.fail("demo", exc)
    raise SystemExit(status)


def _locate(given: Path | None, default: Path) -> Path:
    """``given``, else ``default`` from the working directory or, in a source checkout, from
    the repository the package runs from."""
    if given is not None:
        return given
    if default.exists():
        return default
    checkout = Path(__file__).resolve().parents[3] / default
    return checkout if checkout.exists() else default
