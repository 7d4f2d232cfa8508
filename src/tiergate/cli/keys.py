"""``tiergate keys``: create, list and revoke virtual keys in the fleet's ledger store."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import click

from tiergate.cli.options import fleet_file_option, format_option
from tiergate.ledger.keys import MAX_BUDGET_USD, MAX_PER_MINUTE

if TYPE_CHECKING:
    from tiergate.ledger.records import KeyRecord
    from tiergate.ledger.store import LedgerStore
    from tiergate.spec import Fleet

_FLEET = fleet_file_option(
    exists=True,
    help="The fleet spec (its governance.ledger.store says where keys live).",
)
_STORE = click.option("--store", default=None, help="A store URL overriding the fleet's.")


@click.group("keys")
def command() -> None:
    """Virtual keys: what clients send instead of upstream credentials."""


@command.command("create")
@_FLEET
@_STORE
@click.option("--name", default=None, help="A label for people.")
@click.option("--team", default=None)
@click.option("--project", default=None)
@click.option("--models", default="", help="Comma-separated model names this key may use.")
@click.option(
    "--budget-usd", type=click.FloatRange(min=0, min_open=True, max=MAX_BUDGET_USD), default=None
)
@click.option(
    "--period",
    type=click.Choice(["month"]),
    default=None,
    help="Budget window: the UTC calendar month (default).",
)
@click.option("--days", type=click.IntRange(1, 366), default=None, help="Rolling budget window.")
@click.option(
    "--rpm", type=click.IntRange(1, MAX_PER_MINUTE), default=None, help="Requests per minute."
)
@click.option(
    "--tpm", type=click.IntRange(1, MAX_PER_MINUTE), default=None, help="Tokens per minute."
)
def create(fleet_path: str, store: str | None, **settings: Any) -> None:
    """Create a key and print it (this is the only time it is shown)."""
    import time

    from tiergate.ledger.keys import new_key
    from tiergate.ledger.records import KeyRecord

    if settings["period"] and settings["days"]:
        raise click.UsageError("--period and --days exclude each other")
    models = tuple(m.strip() for m in settings["models"].split(",") if m.strip())
    fleet = _load(fleet_path)  # loaded once: for the models, then for the store
    _check_models(fleet, models)
    template = KeyRecord(
        key_id="",
        key_hash="",
        name=settings["name"],
        team=settings["team"],
        project=settings["project"],
        models=models,
        budget_usd=settings["budget_usd"],
        budget_days=settings["days"] or 0,
        rpm=settings["rpm"],
        tpm=settings["tpm"],
        created_at=time.time(),
    )
    key, record = new_key(template)
    _run(fleet, store, lambda s: s.add_key(record))
    click.echo(f"key id: {record.key_id}")
    click.echo(f"key:    {key}")
    click.echo("Store the key now: it is kept only as a hash and cannot be shown again.", err=True)


@command.command("list")
@_FLEET
@_STORE
@format_option()
def list_keys(fleet_path: str, store: str | None, output_format: str) -> None:
    """List keys (ids and settings, never the keys)."""
    keys: list[KeyRecord] = _run(fleet_path, store, lambda s: s.list_keys())
    if output_format == "json":
        import json

        click.echo(json.dumps([key_summary(k) for k in keys], indent=2))
        return
    from rich.table import Table

    from tiergate.cli.console import console

    table = Table("key id", "name", "team", "project", "models", "budget", "rpm", "tpm", "state")
    for k in keys:
        row = key_summary(k)
        table.add_row(*(str(row[c] if row[c] is not None else "") for c in _COLUMNS))
    console().print(table)


@command.command("revoke")
@_FLEET
@_STORE
@click.argument("key_id")
def revoke(fleet_path: str, store: str | None, key_id: str) -> None:
    """Revoke KEY_ID: requests with it get 401 (within the gateways' key cache time)."""
    import time

    if not _run(fleet_path, store, lambda s: s.revoke_key(key_id, time.time())):
        from tiergate.cli.exits import EXIT_USAGE

        click.echo(f"tiergate keys: no active key with id {key_id}", err=True)
        raise SystemExit(EXIT_USAGE)
    click.echo(f"revoked {key_id}")


_COLUMNS = ("key_id", "name", "team", "project", "models", "budget", "rpm", "tpm", "state")


def key_summary(key: KeyRecord) -> dict[str, Any]:
    """A key as ``keys list`` shows it: the API's view, with the budget and state spelt out."""
    from tiergate.ledger.keys import key_view

    window = f"{key.budget_days}d" if key.budget_days else "month"
    return {
        **key_view(key),
        "models": ",".join(key.models) or "*",
        "budget": f"${key.budget_usd:g}/{window}" if key.budget_usd else None,
        "state": "active" if key.active else "revoked",
    }


def _load(fleet_path: str) -> Fleet:
    """The fleet at ``fleet_path``; exit 2 with its errors when it is invalid."""
    from tiergate.cli import exits
    from tiergate.errors import TiergateError
    from tiergate.spec import load_fleet

    try:
        return load_fleet(fleet_path)
    except TiergateError as exc:
        exits.fail("keys", exc)


def _check_models(fleet: Fleet, models: tuple[str, ...]) -> None:
    """Exit 2 for a model name the fleet does not answer to: such a key could never be used."""
    from tiergate.cli.exits import EXIT_USAGE
    from tiergate.gateway.cascade import entry_points

    known = entry_points(fleet)
    unknown = [name for name in models if name not in known]
    if unknown:
        click.echo(
            f"tiergate keys: --models: unknown model {', '.join(unknown)}; the fleet's models "
            f"are {', '.join(sorted(known))}",
            err=True,
        )
        raise SystemExit(EXIT_USAGE)


def _run(fleet: Fleet | str, store_override: str | None, action: Any) -> Any:
    """Run ``action`` on the key store of ``fleet`` (or of the fleet at that path)."""
    from tiergate.cli import exits
    from tiergate.errors import StoreUnavailableError, TiergateError
    from tiergate.ledger.location import store_url
    from tiergate.ledger.open import open_store

    if isinstance(fleet, str):
        fleet = _load(fleet)
    try:
        url = store_url(fleet, store_override)
    except TiergateError as exc:
        exits.fail("keys", exc)
    except ValueError as exc:
        click.echo(f"tiergate keys: {exc}", err=True)
        raise SystemExit(exits.EXIT_USAGE) from exc

    async def run() -> Any:
        store: LedgerStore = open_store(url)
        await store.open()
        try:
            return await action(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except StoreUnavailableError as exc:
        exits.fail("keys", exc)
