"""``tiergate fetch``: JSON output, exit codes, and eight processes sharing one DEST."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.modelcache.helpers import DirectoryServer, write_model
from tiergate.cli.main import cli
from tiergate.modelcache.cache import LOCK_NAME, read_marker
from tiergate.modelcache.manifest import MANIFEST_NAME, write_manifest

ROOT = Path(__file__).resolve().parents[2]
SHARD1 = "model-00001-of-00002.safetensors"


@pytest.fixture
def published(tmp_path: Path) -> Path:
    root = tmp_path / "published"
    write_model(root, rows=4096)  # shards of ~280 KB
    asyncio.run(write_manifest(root))
    return root


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["fetch", *args])


def json_lines(output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_fetch_prints_a_json_summary_and_exits_0(published: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    result = run("--json", published.as_uri(), str(dest))
    assert result.exit_code == 0, result.output
    summary = json_lines(result.output)[-1]
    assert summary["event"] == "summary"
    assert summary["status"] == "fetched"
    assert summary["files"] == 4
    assert summary["files_verified"] == 4
    assert summary["bytes"] == summary["bytes_transferred"]
    assert set(summary) >= {"seconds", "mb_per_s", "retries", "repairs", "digest"}
    again = json_lines(run("--json", str(published), str(dest)).output)[-1]  # a plain path
    assert again["status"] == "cached"


def test_write_manifest(tmp_path: Path) -> None:
    write_model(tmp_path)
    result = run("--write-manifest", "--json", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert json_lines(result.output) == [
        {"event": "manifest", "path": str(tmp_path / MANIFEST_NAME), "files": 4, "bytes": sum(
            (tmp_path / name).stat().st_size
            for name in ("config.json", "model.safetensors.index.json", SHARD1,
                         "model-00002-of-00002.safetensors")
        )}
    ]  # fmt: skip


def test_usage_and_bad_urls_exit_2(tmp_path: Path) -> None:
    assert run("file:///x").exit_code == 2  # no DEST
    bad_scheme = run("ftp://host/model", str(tmp_path))
    assert bad_scheme.exit_code == 2
    assert "ftp://host/model: unsupported scheme" in bad_scheme.output
    assert run("file://otherhost/model", str(tmp_path)).exit_code == 2
    assert run("--write-manifest", str(tmp_path / "missing")).exit_code == 2


@pytest.mark.parametrize("flags", [("--json",), ()])
def test_missing_source_exits_5_naming_it(tmp_path: Path, flags: tuple[str, ...]) -> None:
    """Off a terminal (as here, and in init container logs) the error is a JSON line too,
    --json or not."""
    result = run(*flags, (tmp_path / "nowhere").as_uri(), str(tmp_path / "dest"))
    assert result.exit_code == 5
    error = json_lines(result.output)[-1]
    assert error["event"] == "error"
    assert error["exit_code"] == 5
    assert "nowhere: no such directory" in str(error["error"])


def test_verification_failure_exits_4_with_file_and_hashes(published: Path, tmp_path: Path) -> None:
    manifest = json.loads((published / MANIFEST_NAME).read_text())
    for item in manifest["files"]:
        if item["path"] == "config.json":
            item["sha256"] = "0" * 64
    (published / MANIFEST_NAME).write_text(json.dumps(manifest))
    dest = tmp_path / "dest"
    result = run("--max-repairs", "1", str(published), str(dest))
    assert result.exit_code == 4
    assert f"config.json: sha256 mismatch: expected {'0' * 64}, actual " in result.output
    assert read_marker(dest) is None


def test_lock_timeout_exits_7(published: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    descriptor = os.open(dest / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        result = run("--lock-timeout", "0.1", str(published), str(dest))
    finally:
        os.close(descriptor)
    assert result.exit_code == 7
    assert ".tiergate.lock: another fetcher held the lock" in result.output


def test_leader_marker_wait_timeout_exits_7(published: Path, tmp_path: Path) -> None:
    result = run(
        "--wait-for-marker", str(tmp_path / "leader"), "--wait-timeout", "0.1",
        str(published), str(tmp_path / "dest"),
    )  # fmt: skip
    assert result.exit_code == 7
    assert "leader's marker did not appear" in result.output


async def test_http_no_space_exits_3(tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    manifest = {"version": 1, "files": [{"path": "w.bin", "size": 2**62, "sha256": "a" * 64}]}
    (served / MANIFEST_NAME).write_text(json.dumps(manifest))
    async with DirectoryServer(served) as server:
        code, out, err = await cli_process("--json", server.url(), str(tmp_path / "dest"))
        assert server.requested == {}  # the manifest only: no byte of data moved
    assert code == 3, err
    assert f"({2**62} bytes) more" in json_lines(out)[-1]["error"]  # type: ignore[operator]


async def test_http_transfer_failure_exits_6(published: Path, tmp_path: Path) -> None:
    async with DirectoryServer(published) as server:
        server.failing.add("config.json")
        code, _, err = await cli_process("--retries", "0", server.url(), str(tmp_path / "d"))
    assert code == 6
    assert "config.json" in err
    assert "HTTP 500" in err


async def cli_process(*args: str) -> tuple[int, str, str]:
    """Run ``tiergate fetch ARGS`` in a process of its own; its exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tiergate", "fetch", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_eight_processes_into_one_dest_read_the_source_once(
    published: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    async with DirectoryServer(published) as server:
        results = await asyncio.gather(
            *(cli_process("--json", "--chunk-mb", "1", server.url(), str(dest)) for _ in range(8))
        )
        requested = dict(server.requested)
    assert [code for code, _, _ in results] == [0] * 8, [err for _, _, err in results]
    statuses = sorted(str(json_lines(out)[-1]["status"]) for _, out, _ in results)
    assert statuses == ["cached"] * 7 + ["fetched"]
    manifest = json.loads((published / MANIFEST_NAME).read_bytes())
    sizes = {item["path"]: item["size"] for item in manifest["files"]}
    assert requested == sizes  # every byte of every file asked for exactly once
    assert read_marker(dest) is not None
