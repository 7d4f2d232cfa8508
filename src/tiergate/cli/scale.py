"""``tiergate scale``: the LLM-aware scaler, as a KEDA external scaler or a dry run."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from rich.table import Table

    from tiergate.scaling.controller import Controller
    from tiergate.spec.scaling import ScalingEntry


@click.command("scale")
@click.option("-c", "--fleet", "fleet_path", required=True, type=click.Path(dir_okay=False))
@click.option(
    "--dry-run", is_flag=True, help="Show signals and both modes' decisions; act on none."
)
@click.option("--once", is_flag=True, help="With --dry-run: one round, then exit.")
@click.option("--serve", is_flag=True, help="Serve KEDA's external scaler protocol (gRPC).")
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=9090, show_default=True, type=click.IntRange(0, 65535))
@click.option("--interval", default=5.0, show_default=True, type=click.FloatRange(0.5, 3600))
def command(
    *,
    fleet_path: str,
    dry_run: bool,
    once: bool,
    serve: bool,
    host: str,
    port: int,
    interval: float,
) -> None:
    """Size each deployment of the fleet's ``scaling`` section from its engines' signals."""
    import asyncio

    from tiergate.errors import SpecError
    from tiergate.spec import load_fleet

    if dry_run == serve:
        raise click.UsageError("choose one of --dry-run and --serve")
    try:
        fleet = load_fleet(fleet_path)
    except SpecError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(2) from exc
    if not fleet.scaling:
        click.echo(f"{fleet_path}: no 'scaling' section: nothing to size", err=True)
        raise SystemExit(2)
    runner = _serve(fleet.scaling, host, port, interval) if serve else None
    asyncio.run(runner or _dry_run(fleet.scaling, interval, once))


async def _dry_run(entries: tuple[ScalingEntry, ...], interval: float, once: bool) -> None:
    import asyncio

    import aiohttp
    from rich.console import Console
    from rich.live import Live

    from tiergate.scaling.controller import Controller
    from tiergate.scaling.kubernetes import replicas_from_spec

    async with aiohttp.ClientSession() as session:
        controller = Controller(entries, session, replicas=replicas_from_spec(entries, session))
        await controller.step()
        console = Console()
        if once:
            console.print(decision_table(controller))
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
    for item in controller.scaled.values():
        snap, decision, other = item.snapshot, item.decision, item.other_decision
        replicas = snap.replicas if snap else ()
        kv = [r.kv_usage for r in replicas if r.kv_usage is not None]
        waiting = [r.waiting for r in replicas if r.waiting is not None]
        running = [r.running for r in replicas if r.running is not None]
        table.add_row(
            item.entry.deployment,
            item.entry.role,
            str(snap.ready) if snap else "?",
            f"{sum(kv) / len(kv):.2f}" if kv else "?",
            f"{sum(waiting):g}" if waiting else "?",
            f"{sum(running):g}" if running else "?",
            f"{snap.ttft_p95_s:.2f}s" if snap and snap.ttft_p95_s is not None else "?",
            item.entry.mode,
            str(decision.desired) if decision else "?",
            str(other.desired) if other else "?",
            decision.reason if decision else "",
        )
    return table
