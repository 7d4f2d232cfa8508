"""``tiergate report``: what each team, project, model, tier, key or stage used and cost in a
month, from the fleet's ledger store."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import click

from tiergate.cli.options import fleet_file_option, format_option
from tiergate.ledger.report import GroupBy

if TYPE_CHECKING:
    from tiergate.ledger.records import RequestRecord
    from tiergate.ledger.report import GpuCost, Period, Report


@click.command("report")
@fleet_file_option(
    required=False,
    help="The fleet spec: its governance.ledger.store and the tiers' GPU-hour prices.",
)
@click.option(
    "--store", default=None, metavar="URL", help="A ledger store URL overriding the fleet's."
)
@click.option(
    "--month", default=None, metavar="YYYY-MM", help="A UTC calendar month  [default: this month]"
)
@click.option(
    "--by",
    type=click.Choice([g.value for g in GroupBy]),
    default=GroupBy.TEAM.value,
    show_default=True,
)
@format_option("table for people, csv or json for machines.", choices=("table", "csv", "json"))
def command(
    fleet_path: str | None, store: str | None, month: str | None, by: str, output_format: str
) -> None:
    """Report requests, tokens, cost, tier shares, fallbacks and errors for one month.

    Exits 0 with the report, 2 on bad input (the message names it), 1 when the store cannot
    be read.
    """
    import time

    from tiergate.ledger.report import build_report, parse_month

    if month is None:
        month = time.strftime("%Y-%m", time.gmtime())
    try:
        period = parse_month(month)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--month'") from exc
    url, gpu_costs = _settings(fleet_path, store)
    records, shown_url = _read(url, period)
    # GPU-hour tiers are charged the hours of the month that have passed by now.
    report = build_report(records, period, GroupBy(by), gpu_costs, now=time.time())
    if output_format == "json":
        import json

        from tiergate.ledger.report import report_json

        click.echo(json.dumps(report_json(report), indent=2))
    elif output_format == "csv":
        from tiergate.ledger.report import report_csv

        click.echo(report_csv(report), nl=False)
    else:
        _print_table(report, shown_url)


def _settings(fleet_path: str | None, store: str | None) -> tuple[str, dict[str, GpuCost]]:
    """The store URL and the GPU-hour tiers, from the fleet and ``--store``."""
    if fleet_path is None:
        if store is None:
            raise click.UsageError("where is the ledger? give --fleet FLEET.yaml or --store URL")
        return store, {}
    from tiergate.cli import exits
    from tiergate.errors import SpecError
    from tiergate.ledger.location import store_url
    from tiergate.ledger.report import gpu_costs
    from tiergate.spec import load_fleet

    try:
        fleet = load_fleet(fleet_path)
        url = store_url(fleet, store)
    except SpecError as exc:
        exits.fail("report", exc)
    except ValueError as exc:
        click.echo(f"tiergate report: {exc}", err=True)
        raise SystemExit(exits.EXIT_USAGE) from exc
    return url, gpu_costs(fleet.tiers)


def _read(url: str, period: Period) -> tuple[list[RequestRecord], str]:
    """The records of ``period``, and the store's URL as it may be shown (no password)."""
    from tiergate.cli import exits
    from tiergate.ledger.open import open_store
    from tiergate.ledger.sqlite import SQLiteStore
    from tiergate.ledger.store import StoreUnavailableError

    try:
        store = open_store(url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--store'") from exc
    if isinstance(store, SQLiteStore) and not store.path.is_file():
        raise click.BadParameter(f"no ledger file at {store.path}", param_hint="'--store'")

    async def read() -> list[RequestRecord]:
        await store.open()
        try:
            return await store.requests(period.start, period.end)
        finally:
            await store.close()

    try:
        return asyncio.run(read()), store.url
    except StoreUnavailableError as exc:
        exits.fail("report", exc)


def _print_table(report: Report, url: str) -> None:
    from rich.markup import escape
    from rich.table import Table

    from tiergate.cli.console import console

    def percent(share: float) -> str:
        return f"{share * 100:.1f}%"

    by = report.by.value
    table = Table(title=f"{report.period.label} by {by} — {escape(url)}", title_justify="left")
    for header in (by, "requests", "input tok", "output tok", "cached tok", "cost $"):
        table.add_column(header, justify="left" if header == by else "right")
    for tier in report.tiers:
        table.add_column(f"% {tier}", justify="right")
    table.add_column("fallback", justify="right")
    table.add_column("error", justify="right")
    for index, row in enumerate((*report.rows, report.total)):
        table.add_row(
            escape(row.group),
            f"{row.requests:,}",
            f"{row.input_tokens:,}",
            f"{row.output_tokens:,}",
            f"{row.cached_tokens:,}",
            f"{row.cost_usd:,.4f}",
            *(percent(row.tier_share(tier)) for tier in report.tiers),
            percent(row.fallback_share),
            percent(row.error_share),
            end_section=index == len(report.rows) - 1,
        )
    out = console()
    out.print(table)
    if report.gpu_tiers:
        gpu = Table(title="GPU-hour tiers: effective price", title_justify="left")
        headers = ("tier", "$/GPU-h", "GPUs", "hours charged", "fixed $", "requests", "tokens")
        for header in (*headers, "$/1k tok"):
            gpu.add_column(header, justify="left" if header == "tier" else "right")
        gpu.add_column("note")
        period_hours = report.period.hours
        for cost in report.gpu_tiers:
            per_1k = cost.usd_per_1k_tokens
            fixed = cost.fixed_usd
            gpu.add_row(
                escape(cost.tier),
                "-" if cost.elastic else f"{cost.usd_per_gpu_hour:g}",
                "elastic" if cost.elastic else str(cost.gpus),
                "-" if cost.hours is None else f"{cost.hours:,.1f} of {period_hours:g}",
                "-" if fixed is None else f"{fixed:,.2f}",
                f"{cost.requests:,}",
                f"{cost.tokens:,}",
                "-" if per_1k is None else f"{per_1k:.6f}",
                escape(cost.note or ""),
            )
        out.print(gpu)
