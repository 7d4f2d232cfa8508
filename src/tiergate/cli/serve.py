"""``tiergate serve``: the OpenAI-compatible cascade gateway."""

from __future__ import annotations

from pathlib import Path

import click

from tiergate.cli.options import fleet_option, log_level_option


@click.command("serve")
@fleet_option(help="Fleet spec (YAML). SIGHUP reloads it.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=4000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Processes sharing the port (SO_REUSEPORT); one that dies is started again.",
)
@log_level_option
def command(fleet: Path, host: str, port: int, workers: int, log_level: str) -> None:
    """Serve the fleet's cascade as an OpenAI-compatible API.

    SIGHUP reloads the fleet spec (a bad one is rejected and the old one stays); SIGTERM stops
    accepting connections and drains requests in flight, up to gateway.drainTimeoutMs. Each
    request is logged on one line (tiergate.access, JSON off a terminal).
    """
    from tiergate.cli import exits, logs
    from tiergate.errors import TiergateError
    from tiergate.gateway.server import run

    logs.setup(log_level)
    try:
        with exits.listening(host, [port]):
            status = run(fleet, host, port, workers, log_level=log_level)
    except TiergateError as exc:
        exits.fail("serve", exc)
    raise SystemExit(status)
