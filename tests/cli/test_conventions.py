"""One convention across the commands: ``-c/--fleet``, ``--format``, whole table cells off a
terminal, one line and exit 1 for a port in use, one exit code per kind of error, and
``--help`` texts without raw markup."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from tests.cli.test_keys import FLEET as KEYS_FLEET
from tests.scaling.test_controller import engines, fleet_text
from tiergate.cli.main import COMMANDS, cli

__all__ = ["engines"]  # the fixture of fake vLLM engines

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed-3tier.yaml"
BIFROST = ROOT / "examples" / "seed-bifrost-config.yaml"
INVALID = "routing:\n  strategy: random\nmodels: []\n"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def invalid_spec(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(INVALID)
    return path


@pytest.mark.parametrize("option", ["-c", "--fleet", "--config"])
def test_serve_takes_the_fleet_as_c_fleet_and_still_as_config(tmp_path: Path, option: str) -> None:
    result = invoke("serve", option, str(invalid_spec(tmp_path)))
    assert result.exit_code == 2
    assert result.output.startswith("tiergate serve: 2 errors in fleet spec:")


def test_serve_without_a_fleet_is_a_usage_error() -> None:
    result = invoke("serve")
    assert result.exit_code == 2
    assert "Missing option '-c' / '--fleet'" in result.output


def test_check_takes_files_with_c_fleet_and_as_arguments() -> None:
    result = invoke("check", "--format", "json", "-c", str(SEED), str(BIFROST))
    assert result.exit_code == 0, result.output
    checked = json.loads(result.output)
    assert [fleet["file"] for fleet in checked["fleets"]] == [str(SEED), str(BIFROST)]
    assert checked["valid"] is True


def test_demo_takes_the_fleet_as_c(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    result = invoke("demo", "-c", str(missing), "--duration", "1")
    assert result.exit_code == 2
    assert result.output.startswith("tiergate demo: ")
    assert str(missing) in result.output


def test_scale_listens_on_loopback_by_default() -> None:
    scale = cli.get_command(click.Context(cli), "scale")
    assert scale is not None
    (host,) = [param for param in scale.params if param.name == "host"]
    assert host.default == "127.0.0.1"


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as holder:
        yield holder.getsockname()[1]


def scaling_fleet(tmp_path: Path) -> str:
    path = tmp_path / "scaling.yaml"
    path.write_text(fleet_text(["http://127.0.0.1:9/metrics"]))
    return str(path)


@pytest.mark.parametrize(
    "command",
    [
        ["serve", "-c", str(SEED)],
        ["serve", "-c", str(SEED), "--workers", "2"],
        ["emulate", "--model", "Qwen/Qwen3-32B", "--gpu", "H100", "--replicas", "2"],
        ["scale", "-c", "SCALING", "--serve"],
    ],
    ids=["serve", "serve-workers", "emulate", "scale"],
)
def test_a_port_in_use_is_one_line_and_exit_1(
    command: list[str], taken_port: int, tmp_path: Path
) -> None:
    args = [scaling_fleet(tmp_path) if arg == "SCALING" else arg for arg in command]
    done = subprocess.run(
        [sys.executable, "-m", "tiergate", *args, "--host", "127.0.0.1", "--port", str(taken_port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    line = f"tiergate {command[0]}: port {taken_port} on 127.0.0.1 is already in use"
    assert done.stderr.strip() == line


@pytest.mark.parametrize(
    "command",
    [
        ["serve", "-c", "BAD"],
        ["check", "BAD"],
        ["scale", "-c", "BAD", "--dry-run"],
        ["keys", "list", "-c", "BAD"],
        ["report", "-c", "BAD"],
    ],
)
def test_an_invalid_fleet_exits_2_on_every_command(command: list[str], tmp_path: Path) -> None:
    bad = str(invalid_spec(tmp_path))
    result = invoke(*(bad if arg == "BAD" else arg for arg in command))
    assert result.exit_code == 2, result.output
    assert "errors in fleet spec" in result.output or "invalid" in result.output


@pytest.mark.parametrize("command", [["keys", "list"], ["report"]])
def test_an_unreachable_store_is_one_line_and_exit_1(command: list[str]) -> None:
    store = "postgresql://tiergate@127.0.0.1:9/ledger"  # nothing listens on port 9
    result = invoke(*command, "-c", str(SEED), "--store", store)
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"tiergate {command[0]}: ")
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_check_tables_keep_cells_whole_off_a_terminal(tmp_path: Path) -> None:
    name = "onprem-h100-" + "x" * 60
    url = "http://inference.internal.example.com:8000/" + "v" * 40 + "/v1"
    path = tmp_path / "fleet.yaml"
    path.write_text(
        f"models:\n  - {{name: {name}, provider: openai-compatible, baseUrl: '{url}', "
        "model: m, costPer1kTokens: 0.000125}\n"
    )
    result = invoke("check", str(path))
    assert result.exit_code == 0, result.output
    (row,) = [line for line in result.output.splitlines() if line.startswith("│ 1 ")]
    assert name in row
    assert url in row
    assert "0.000125" in row


def test_check_prints_line_numbers_not_emoji(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text("#\n" * 99 + "models: 100\n")  # the error is on line 100
    result = invoke("check", str(path))
    assert result.exit_code == 2
    assert f"{path}:100:" in result.output
    assert "\N{HUNDRED POINTS SYMBOL}" not in result.output


def test_keys_list_shows_whole_key_ids_off_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the fleet's ledger is keys.db in the working directory
    (tmp_path / "fleet.yaml").write_text(KEYS_FLEET)
    created = invoke("keys", "create", "-c", "fleet.yaml", "--name", "a-rather-long-key-name")
    key_id = created.output.split("key id: ")[1].split()[0]
    listed = invoke("keys", "list", "-c", "fleet.yaml")
    assert listed.exit_code == 0, listed.output
    (row,) = [line for line in listed.output.splitlines() if key_id in line]
    assert "a-rather-long-key-name" in row


def test_fetch_takes_format_json_and_keeps_json_as_its_alias(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"w" * 10)
    for option in (["--format", "json"], ["--json"]):
        result = invoke("fetch", "--write-manifest", *option, str(tmp_path))
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["event"] == "manifest"
    both = invoke("fetch", "--write-manifest", "--json", "--format", "table", str(tmp_path))
    assert both.exit_code == 2


def test_scale_dry_run_prints_json(engines: list[str], tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(fleet_text(engines))
    result = invoke("scale", "-c", str(path), "--dry-run", "--once", "--format", "json")
    assert result.exit_code == 0, result.output
    (deployment,) = json.loads(result.output)["deployments"]
    assert (deployment["deployment"], deployment["ready"], deployment["desired"]) == (
        "vllm-qwen",
        2,
        6,
    )
    assert deployment["kvUsage"] == pytest.approx(0.97)


def all_commands() -> Iterator[tuple[str, ...]]:
    context = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(context, name)
        yield (name,)
        if isinstance(command, click.Group):
            for sub in command.list_commands(context):
                yield (name, sub)


@pytest.mark.parametrize("command", list(all_commands()), ids=" ".join)
def test_help_has_no_raw_markup(command: tuple[str, ...]) -> None:
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "``" not in result.output
    assert "\\b" not in result.output


def test_demo_prints_its_summary_as_json_and_progress_on_stderr() -> None:
    args = ["--format", "json", "--duration", "30", "--speedup", "30"]
    done = subprocess.run(
        [sys.executable, "-m", "tiergate", "demo", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)  # stdout holds the summary and nothing else
    assert [tier["role"] for tier in summary["tiers"]] == ["on-prem", "cloud", "managed API"]
    assert summary["sent"] == summary["total"] > 0
    assert sum(tier["requests"] for tier in summary["tiers"]) == summary["sent"]
    assert summary["costUsd"] < summary["baselineCostUsd"]
    assert done.stderr.startswith("gateway http://127.0.0.1:")  # the plain progress lines


@pytest.mark.parametrize("output_format", ["table", "json"])
def test_scale_dry_run_off_a_terminal_prints_each_round(
    engines: list[str], tmp_path: Path, output_format: str
) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(fleet_text(engines))
    args = ["-c", str(path), "--dry-run", "--interval", "0.5"]
    if output_format == "json":  # tables are the default
        args += ["--format", "json"]
    process = subprocess.Popen(
        [sys.executable, "-m", "tiergate", "scale", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    rounds: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if "vllm-qwen" in line:
                rounds.append(line)
            if len(rounds) == 2:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=20)
    process.kill()
    process.wait(timeout=10)
    assert process.stdout is not None
    process.stdout.close()
    assert len(rounds) == 2  # a new table (or object) per round, not one redrawn in place
    if output_format == "json":
        assert [json.loads(line)["deployments"][0]["desired"] for line in rounds] == [6, 6]
