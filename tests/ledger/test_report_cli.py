"""``tiergate report`` end to end, on a real SQLite ledger: table, CSV, JSON, bad input."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.ledger.samples import request
from tiergate.cli.main import cli
from tiergate.ledger.sqlite import SQLiteStore

FLEET = """\
routing:
  cascadeOrder: [onprem, bedrock]
models:
  - name: onprem
    provider: openai-compatible
    baseUrl: http://vllm:8000/v1
    model: Qwen/Qwen3-32B
    pricing: {gpuHourUsd: 2.5, gpus: 8}
  - name: bedrock
    provider: bedrock
    model: anthropic.claude-sonnet-4-20250514
    region: us-east-1
    pricing: {input: 3, output: 15}
governance:
  ledger:
    store: sqlite:///ledger.db
"""


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    """A ledger with four November requests of two teams."""
    path = tmp_path / "ledger.db"

    async def fill() -> None:
        store = SQLiteStore(path)
        await store.open()
        store.record(
            request(
                0, team="search", tier="onprem", input_tokens=3000, output_tokens=1000, cost_usd=0.0
            )
        )
        store.record(
            request(1, team="search", tier="bedrock", cost_usd=0.5, fallbacks="onprem:status_503")
        )
        store.record(request(2, team="ads", tier="bedrock", cost_usd=1.25))
        store.record(
            request(
                3,
                team="ads",
                tier="onprem",
                input_tokens=800,
                output_tokens=200,
                cost_usd=0.0,
                status=500,
                error="boom",
            )
        )
        await store.close()

    asyncio.run(fill())
    return path


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["report", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def test_json_report_from_a_store_url(ledger: Path) -> None:
    code, out, _ = invoke(
        "--store", f"sqlite:///{ledger}", "--month", "2026-11", "--format", "json"
    )
    assert code == 0
    document = json.loads(out)
    assert [(row["team"], row["requests"], row["costUsd"]) for row in document["rows"]] == [
        ("ads", 2, 1.25),
        ("search", 2, 0.5),
    ]
    assert document["rows"][1]["fallbackShare"] == 0.5
    assert document["rows"][0]["errorShare"] == 0.5
    assert document["total"]["requests"] == 4
    assert document["gpuTiers"] == []  # no fleet: no GPU-hour prices


def test_csv_report_by_tier_with_the_fleets_gpu_prices(ledger: Path, tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(FLEET)  # its store, sqlite:///ledger.db, is relative to the fleet file
    code, out, _ = invoke(
        "--fleet", str(fleet), "--month", "2026-11", "--by", "tier", "--format", "csv"
    )
    assert code == 0
    rows = {row["tier"]: row for row in csv.DictReader(io.StringIO(out))}
    assert rows["onprem"]["requests"] == "2"
    # 2.5 $/GPU-h * 8 GPUs * 720 h = 14,400 $ over 5,000 tokens → 2,880 $ per 1k tokens.
    assert rows["onprem"]["gpu_fixed_usd"] == "14400.0"
    assert rows["onprem"]["usd_per_1k_tokens"] == "2880.0"


def test_table_report(ledger: Path, tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(FLEET)
    code, out, _ = invoke("-c", str(fleet), "--month", "2026-11")
    assert code == 0
    lines = out.splitlines()
    assert "2026-11 by team" in lines[0]
    ads = next(line for line in lines if line.startswith("│ ads"))
    assert [cell.strip() for cell in ads.split("│")[1:-1]] == [
        "ads",
        "2",
        "900",
        "220",
        "0",
        "1.2500",
        "50.0%",
        "50.0%",
        "0.0%",
        "50.0%",
    ]
    assert any(line.startswith("│ total") for line in lines)
    assert "GPU-hour tiers" in out
    assert "2880.000000" in out


def test_an_empty_month_is_an_empty_report(ledger: Path) -> None:
    code, out, _ = invoke(
        "--store", f"sqlite:///{ledger}", "--month", "2026-10", "--format", "json"
    )
    assert code == 0
    assert json.loads(out)["rows"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--month", "2026-13"], "month '2026-13' does not exist"),
        (["--month", "Nov 2026"], "month 'Nov 2026' is not YYYY-MM"),
        (["--by", "colour"], "'colour' is not one of"),
        (["--format", "xml"], "'xml' is not one of"),
    ],
)
def test_bad_input_exits_2_naming_the_problem(ledger: Path, args: list[str], message: str) -> None:
    code, _, err = invoke("--store", f"sqlite:///{ledger}", *args)
    assert code == 2
    assert message in err


def test_missing_or_unknown_store_exits_2(tmp_path: Path) -> None:
    code, _, err = invoke("--month", "2026-11")
    assert code == 2
    assert "give --fleet FLEET.yaml or --store URL" in err
    code, _, err = invoke("--store", f"sqlite:///{tmp_path / 'nothing.db'}")
    assert code == 2
    assert "no ledger file at" in err
    assert not (tmp_path / "nothing.db").exists()
    code, _, err = invoke("--store", "mysql://root:pw@db/x")
    assert code == 2
    assert "expected sqlite:///PATH" in err
    bad_fleet = tmp_path / "bad.yaml"
    bad_fleet.write_text("models: []\n")
    code, _, err = invoke("--fleet", str(bad_fleet))
    assert code == 2
    assert "bad.yaml" in err


def test_a_postgres_ledger_and_its_password_kept_out_of_the_output(postgres_dsn: str) -> None:
    dsn = postgres_dsn.replace("postgres@", "postgres:hunter2@")  # trust auth ignores it

    async def fill() -> None:
        from tiergate.ledger.postgres import PostgresStore  # noqa: PLC0415

        store = PostgresStore(dsn)
        await store.open()
        store.record(request(0, team="search", cost_usd=0.5))
        store.record(request(1, team="ads", cost_usd=0.25))
        await store.close()

    asyncio.run(fill())
    code, out, _ = invoke("--store", dsn, "--month", "2026-11")
    assert code == 0
    assert "hunter2" not in out
    assert postgres_dsn.split("@")[1] in out  # host, port and database are shown
    rows = [line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│ ")]
    assert rows == ["search", "ads", "total"]


def test_the_installed_command(ledger: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tiergate",
            "report",
            "--store",
            f"sqlite:///{ledger}",
            "--month",
            "2026-11",
            "--by",
            "tier",
            "--format",
            "csv",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("tier,requests,")
