"""A real full disk: DEST on a small tmpfs, mounted in a private mount namespace
(``unshare --map-root-user --mount``), so nothing outside the test sees it.

Two ways to run out: a plan that does not fit is refused before any byte moves; a plan whose
bytes fit but whose files do not (a tmpfs page per one-byte file, plus each file's journal)
hits ENOSPC during the transfer. Either way: exit code 3 (not enough space), a message with the
numbers, and no completion marker.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import missing
from tiergate.cli.fetch import EXIT_SPACE

# Inside the namespace: mount DEST as a tmpfs of SIZE, fetch into it, then report what is
# left there (a marker or not, files installed) as one JSON line after the CLI's output.
SCRIPT = """
set -eu
mount -t tmpfs -o size="$SIZE" tmpfs "$DEST"
set +e
"$TIERGATE" fetch --json --connections 4 "$SOURCE" "$DEST"
code=$?
set -e
marker=0; [ -e "$DEST/.tiergate-complete.json" ] && marker=1
printf '{"exit": %s, "marker": %s}\\n' "$code" "$marker"
"""


def in_small_filesystem(source: Path, dest: Path, size: str) -> tuple[dict[str, int], str]:
    """Fetch ``source`` into ``dest`` mounted as a tmpfs of ``size``; (result, CLI output)."""
    if shutil.which("unshare") is None:
        missing("unshare (util-linux) is needed to mount a small filesystem privately")
    dest.mkdir()
    environment = {"SIZE": size, "DEST": str(dest), "SOURCE": source.as_uri()}
    environment["TIERGATE"] = str(Path(sys.executable).with_name("tiergate"))
    probe = subprocess.run(
        ["unshare", "--map-root-user", "--mount", "true"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        missing(f"private mount namespaces are not allowed here: {probe.stderr.decode().strip()}")
    finished = subprocess.run(
        ["unshare", "--map-root-user", "--mount", "sh", "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        env={**environment, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        check=False,
    )
    lines = finished.stdout.strip().splitlines()
    assert lines, finished.stderr
    return json.loads(lines[-1]), finished.stdout + finished.stderr


def test_a_plan_larger_than_the_disk_is_refused_before_any_byte_moves(tmp_path: Path) -> None:
    source = tmp_path / "model"
    source.mkdir()
    (source / "model.safetensors.bin").write_bytes(b"\x01" * (2 * 1024 * 1024))
    result, output = in_small_filesystem(source, tmp_path / "dest", "512k")
    assert result == {"exit": EXIT_SPACE, "marker": 0}, output
    assert "2.0 MiB" in output or "2097152" in output, output  # the numbers are said


def test_running_out_of_space_during_the_transfer_marks_nothing_complete(
    tmp_path: Path,
) -> None:
    source = tmp_path / "model"
    source.mkdir()
    # 2,000 bytes in all, far below the 256 KiB free, but every file takes at least a 4 KiB
    # tmpfs page (and its journal another): the disk fills long before the last file.
    for n in range(200):
        (source / f"part-{n:03d}.bin").write_bytes(bytes([n % 256]) * 10)
    result, output = in_small_filesystem(source, tmp_path / "dest", "256k")
    assert result == {"exit": EXIT_SPACE, "marker": 0}, output
    assert "space" in output.lower(), output


@pytest.mark.parametrize("size", ["8m"])
def test_the_same_fetch_completes_where_there_is_room(tmp_path: Path, size: str) -> None:
    source = tmp_path / "model"
    source.mkdir()
    for n in range(200):
        (source / f"part-{n:03d}.bin").write_bytes(bytes([n % 256]) * 10)
    result, output = in_small_filesystem(source, tmp_path / "dest", size)
    assert result == {"exit": 0, "marker": 1}, output
