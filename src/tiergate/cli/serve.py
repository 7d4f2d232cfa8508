"""``tiergate serve``: the OpenAI-compatible cascade gateway."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("serve")
@click.option(
    "-c",
    "--config",
    "fleet",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Fleet spec (YAML). SIGHUP reloads it.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=4000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Processes sharing the port (SO_REUSEPORT).",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def command(fleet: Path, host: str, port: int, workers: int, log_level: str) -> None:
    """Serve the fleet's cascade as an OpenAI-compatible API.

    SIGHUP reloads the fleet spec (a bad one is rejected and the old one stays); SIGTERM stops
    accepting connections and drains requests in flight, up to gateway.drainTimeoutMs.
    """
    from tiergate.cli import logs
    from tiergate.errors import SpecError
    from tiergate.gateway.server import run

    logs.setup(log_level)
    try:
        status = run(fleet, host, port, workers)
    except SpecError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(2) from exc
    raise SystemExit(status)
