"""``tiergate demo`` end to end, as a real process: a short slice of the Azure trace through the
gateway and three emulated tiers, with the on-prem tier broken part-way."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRACE = ROOT / "examples" / "traces" / "AzureLLMInferenceTrace_code.csv"
FLEET = ROOT / "examples" / "demo-fleet.yaml"
TIERS = ("onprem-h100-emulated", "cloud-h100-spot-emulated", "managed-api-emulated")
# The first 240 s of the trace hold 594 requests, most in two bursts, so the fault (at 30% of
# the requests) lands in traffic; at x15 the replay takes 16 s.
ARGS = ["--trace", str(TRACE), "--fleet", str(FLEET), "--duration", "240", "--speedup", "15"]


def demo(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.Popen(
        [sys.executable, "-m", "tiergate", "demo", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def table_rows(output: str) -> dict[str, list[str]]:
    """The summary's per-tier rows, by tier name: its cells after the name."""
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) == 8 and cells[0].split(" ")[0] in TIERS:
            rows[cells[0].split(" ")[0]] = cells[1:]
    return rows


def fallbacks(output: str) -> dict[tuple[str, str, str], int]:
    moves = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) == 4 and cells[0] in TIERS and cells[3].isdigit():
            moves[(cells[0], cells[1], cells[2])] = int(cells[3])
    return moves


def listening_ports(output: str) -> list[int]:
    first = output.splitlines()[0] + output.splitlines()[1]
    return [int(port) for port in re.findall(r"http://127\.0\.0\.1:(\d+)/v1", first)]


def refuses(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_the_demo_serves_on_every_tier_falls_back_when_on_prem_breaks_and_cleans_up() -> None:
    proc = demo(*ARGS, "--seed", "3")
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output

    rows = table_rows(output)
    assert set(rows) == set(TIERS), output
    requests = {tier: int(cells[0]) for tier, cells in rows.items()}
    assert requests["onprem-h100-emulated"] > 0
    assert requests["cloud-h100-spot-emulated"] > 0
    # Every request was answered, by one tier or another, and the client saw no failure.
    assert sum(requests.values()) == 594
    assert "594 of 594 sent, 0 failed as the client saw them" in output
    for cells in rows.values():
        assert cells[3].startswith("$")

    # The fault: on-prem answered 503, the cascade moved those requests to the cloud tier,
    # and the error-rate breaker then skipped on-prem without trying it.
    moves = fallbacks(output)
    assert moves[("onprem-h100-emulated", "cloud-h100-spot-emulated", "status")] > 0
    assert moves[("onprem-h100-emulated", "cloud-h100-spot-emulated", "breaker_open")] > 0
    assert int(rows["onprem-h100-emulated"][-1]) > 0  # failed attempts
    assert "onprem-h100-emulated broken: every request answers 503" in output
    assert "onprem-h100-emulated healed" in output
    assert re.search(r"total cost \$\d+\.\d{4} vs \$\d+\.\d{4} with every request on the", output)

    # Everything ran in the process, which has exited: its gateway and tiers are gone.
    ports = listening_ports(output)
    assert len(ports) == 4
    assert all(refuses(port) for port in ports)


def test_ctrl_c_stops_the_demo_with_a_summary() -> None:
    proc = demo(*ARGS)
    assert proc.stdout is not None
    # Wait for the gateway to be up (the first line names it); bounded by the trace's length.
    for _ in range(5):
        line = proc.stdout.readline()
        if line.startswith("gateway http://"):
            break
    else:
        pytest.fail("the demo did not start")
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, rest
    assert "interrupted: replay stopped early" in rest
    assert "total cost" in rest
    assert "Traceback" not in rest
