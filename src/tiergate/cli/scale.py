"""``tiergate scale``: the LLM-aware scaler, as a KEDA external scaler or a dry run."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from tiergate.cli.options import fleet_file_option, format_option

if TYPE_CHECKING:
    from rich.table import Table

    from tiergate.scaling.controller import Controller
    from tiergate.spec.scaling import ScalingEntry


@click.command("scale")
@fleet_file_option(
    help="The fleet spec whose scaling section is sized.",
)
@click.option(
    "--dry-run", is_flag=True, help="Show signals and both modes' decisions; act on none."
)
@click.option("--once", is_flag=True, help="With --dry-run: one round, then exit.")
@click.option("--serve", is_flag=True, help="Serve KEDA's external scaler protocol (gRPC).")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address --serve listens on (0.0.0.0 in a pod, for KEDA to reach it).",
)
@click.option("--port", default=9090, show_default=True, type=click.IntRange(0, 65535))
@click.option("--interval", default=5.0, show_default=True, type=click.FloatRange(0.5, 3600))
@format_option("--dry-run's decisions: a table, or one JSON object per round.")
def command(
    *,
    fleet_path: str,
    dry_run: bool,
    once: bool,
    serve: bool,
    host: str,
    port: int,
    interval: float,
    output_format: str,
) -> None:
    """Size each deployment of the fleet's scaling section from its engines' signals.

    With --dry-run, a table redrawn every interval on a terminal, and one table (or JSON
    object) per round elsewhere. With --serve, KEDA's external scaler until SIGTERM.
    """
    import asyncio

    from tiergate.cli import exits
    from tiergate.errors import TiergateError
    from tiergate.spec import load_fleet

    if dry_run == serve:
        raise click.UsageError("choose one of --dry-run and --serve")
    try:
        fleet = load_fleet(fleet_path)
    except TiergateError as exc:
        exits.fail("scale", exc)
    if not fleet.scaling:
        click.echo(f"tiergate scale: {fleet_path}: no 'scaling' section: nothing to size", err=True)
        raise SystemExit(exits.EXIT_USAGE)
    if not serve:
        asyncio.run(_dry_run(fleet.scaling, interval, once, output_format))
        return
    try:
        # gRPC writes its own line about a failed bind to stderr: find a taken port first.
        exits.check_port_free(host, port)
        with exits.listening(host, [port]):
            asyncio.run(_serve(fleet.scaling, host, port, interval))
    except TiergateError as exc:
        exits.fail("scale", exc)


async def _dry_run(
    entries: tuple[ScalingEntry, ...], interval: float, once: bool, output_format: str
) -> None:
    import asyncio

    import aiohttp
    from rich.live import Live

    from tiergate.cli.console import console as make_console
    from tiergate.scaling.controller import Controller
    from tiergate.scaling.kubernetes import replicas_from_spec

    console = make_console()

    def show(controller: Controller) -> None:
        if output_format == "json":
            click.echo(json.dumps({"deployments": decision_json(controller)}))
        else:
            console.print(decision_table(controller))

    async with aiohttp.ClientSession() as session:
        controller = Controller(entries, session, replicas=replicas_from_spec(entries, session))
        await controller.step()
        if once or output_format == "json" or not console.is_terminal:
            # Off a terminal (or as JSON), one table or object per round, never redrawn.
            show(controller)
            while not once:
                await asyncio.sleep(interval)
                await controller.step()
                show(controller)
            return
        with Live(decision_table(controller), console=console, auto_refresh=False) as live:
            while True:
                await asyncio.sleep(interval)
                await controller.step()
                live.update(decision_table(controller), refresh=True)


async def _serve(entries: tuple[ScalingEntry, ...], host: str, port: int, interval: float) -> None:
    import asyncio
    import logging
    import signal

    import aiohttp

    from tiergate.cli import logs
    from tiergate.scaling.controller import Controller
    from tiergate.scaling.keda import serve
    from tiergate.scaling.kubernetes import replicas_from_spec

    logs.setup("info")
    log = logging.getLogger("tiergate.scale")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with aiohttp.ClientSession() as session:
        controller = Controller(entries, session, replicas=replicas_from_spec(entries, session))
        server = await serve(controller.decide, host, port)
        log.info(
            "KEDA external scaler on %s:%d for %d deployments", host, server.port, len(entries)
        )
        try:
            await controller.run(interval, stop)
        finally:
            await server.close()


def decision_json(controller: Controller) -> list[dict[str, Any]]:
    """Per deployment and role: the signals and what each mode would do, and why (None where
    a signal is unknown)."""
    rows = []
    for item in controller.scaled.values():
        snap, decision, other = item.snapshot, item.decision, item.other_decision
        replicas = snap.replicas if snap else ()
        kv = [r.kv_usage for r in replicas if r.kv_usage is not None]
        waiting = [r.waiting for r in replicas if r.waiting is not None]
        running = [r.running for r in replicas if r.running is not None]
        rows.append(
            {
                "deployment": item.entry.deployment,
                "role": item.entry.role,
                "ready": snap.ready if snap else None,
                "kvUsage": sum(kv) / len(kv) if kv else None,
                "waiting": sum(waiting) if waiting else None,
                "running": sum(running) if running else None,
                "ttftP95Seconds": snap.ttft_p95_s if snap else None,
                "mode": item.entry.mode,
                "desired": decision.desired if decision else None,
                "otherModeDesired": other.desired if other else None,
                "reason": decision.reason if decision else None,
            }
        )
    return rows


def decision_table(controller: Controller) -> Table:
    """Per deployment and role: the signals and what each mode would do, and why."""
    from rich.table import Table

    table = Table(
        "deployment",
        "role",
        "ready",
        "kv",
        "waiting",
        "running",
        "ttft p95",
        "mode",
        "desired",
        "other mode",
        "reason",
    )

    def shown(value: object, text: str) -> str:
        return "?" if value is None else text

    for row in decision_json(controller):
        table.add_row(
            row["deployment"],
            row["role"],
            shown(row["ready"], str(row["ready"])),
            shown(row["kvUsage"], f"{row['kvUsage'] or 0:.2f}"),
            shown(row["waiting"], f"{row['waiting'] or 0:g}"),
            shown(row["running"], f"{row['running'] or 0:g}"),
            shown(row["ttftP95Seconds"], f"{row['ttftP95Seconds'] or 0:.2f}s"),
            row["mode"],
            shown(row["desired"], str(row["desired"])),
            shown(row["otherModeDesired"], str(row["otherModeDesired"])),
            row["reason"] or "",
        )
    return table
