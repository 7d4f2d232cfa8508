"""``tiergate keys create`` refuses what could never work: unknown models, figures beyond range."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from tests.cli.test_keys import FLEET, stored_keys
from tiergate.cli.main import cli


def test_create_refuses_models_the_fleet_does_not_have(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(FLEET)
    result = CliRunner().invoke(cli, ["keys", "create", "-c", str(fleet), "--models", "a,nosuch"])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert "nosuch" in line
    assert "the fleet's models are a, x" in line  # the tier's name and its upstream model id
    assert not (tmp_path / "keys.db").exists() or stored_keys(tmp_path / "keys.db") == []


def test_create_accepts_a_tier_by_its_upstream_model_id(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(FLEET)
    result = CliRunner().invoke(cli, ["keys", "create", "-c", str(fleet), "--models", "x"])
    assert result.exit_code == 0, result.output
    (record,) = stored_keys(tmp_path / "keys.db")
    assert record.models == ("x",)


def test_create_refuses_figures_no_store_can_hold(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(FLEET)
    for option, value in (("--rpm", str(2**63)), ("--tpm", "1e13"), ("--budget-usd", "1e300")):
        result = CliRunner().invoke(cli, ["keys", "create", "-c", str(fleet), option, value])
        assert result.exit_code == 2, result.output
        assert option in result.output
