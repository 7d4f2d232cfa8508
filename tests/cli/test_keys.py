"""``tiergate keys``: create, list and revoke against the fleet's SQLite ledger."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner

from tiergate.cli.main import cli
from tiergate.ledger.keys import key_hash
from tiergate.ledger.open import open_store
from tiergate.ledger.records import KeyRecord

FLEET = """\
models:
  - {name: a, provider: openai-compatible, baseUrl: "http://a:8000/v1", model: x, costPer1kTokens: 1}
governance:
  ledger: {store: "sqlite:///keys.db"}
"""


def stored_keys(path: Path) -> list[KeyRecord]:
    async def read() -> list[KeyRecord]:
        store = open_store(f"sqlite:///{path}")
        await store.open()
        try:
            return await store.list_keys()
        finally:
            await store.close()

    return asyncio.run(read())


def test_create_list_revoke(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(FLEET)
    runner = CliRunner()
    created = runner.invoke(
        cli,
        [
            "keys",
            "create",
            "-c",
            str(fleet),
            "--team",
            "ml",
            "--project",
            "search",
            "--models",
            "a",
            "--budget-usd",
            "25",
            "--days",
            "7",
            "--rpm",
            "60",
            "--name",
            "ci",
        ],
    )
    assert created.exit_code == 0, created.output
    lines = dict(line.split(":", 1) for line in created.stdout.splitlines())
    key_id, key = lines["key id"].strip(), lines["key"].strip()
    assert key.startswith("sk-tg-")
    assert "cannot be shown again" in created.stderr
    # The SQLite path is relative to the fleet file, wherever the command runs.
    (record,) = stored_keys(tmp_path / "keys.db")
    assert (record.key_id, record.team, record.project, record.models) == (
        key_id,
        "ml",
        "search",
        ("a",),
    )
    assert (record.budget_usd, record.budget_days, record.rpm, record.tpm) == (25.0, 7, 60, None)
    assert record.key_hash == key_hash(key)

    listed = runner.invoke(cli, ["keys", "list", "-c", str(fleet), "--format", "json"])
    assert listed.exit_code == 0, listed.output
    (shown,) = json.loads(listed.stdout)
    assert (shown["key_id"], shown["budget"], shown["state"]) == (key_id, "$25/7d", "active")
    assert key not in listed.stdout
    assert record.key_hash not in listed.stdout

    revoked = runner.invoke(cli, ["keys", "revoke", "-c", str(fleet), key_id])
    assert (revoked.exit_code, revoked.stdout.strip()) == (0, f"revoked {key_id}")
    again = runner.invoke(cli, ["keys", "revoke", "-c", str(fleet), key_id])
    assert again.exit_code == 2
    assert f"no active key with id {key_id}" in again.stderr
    table = runner.invoke(cli, ["keys", "list", "-c", str(fleet)], env={"COLUMNS": "200"})
    assert "revoked" in table.stdout


def test_a_fleet_without_a_ledger_is_a_clear_error(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(FLEET.split("governance:", maxsplit=1)[0])
    result = CliRunner().invoke(cli, ["keys", "list", "-c", str(fleet)])
    assert result.exit_code == 2
    assert "no governance.ledger.store (and no --store)" in result.stderr
    other = tmp_path / "other.db"
    ok = CliRunner().invoke(
        cli, ["keys", "list", "-c", str(fleet), "--store", f"sqlite:///{other}"]
    )
    assert ok.exit_code == 0, ok.output
    assert other.exists()


def test_period_and_days_exclude_each_other(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(FLEET)
    result = CliRunner().invoke(
        cli, ["keys", "create", "-c", str(fleet), "--period", "month", "--days", "3"]
    )
    assert result.exit_code == 2
    assert "--period and --days exclude each other" in result.output
