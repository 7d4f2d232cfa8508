"""The repository stands alone and its README claims only what the CLI has.

A user's clone has no ``../shared``: nothing tracked may cite it. The README's introduction may
name a capability only once the command that delivers it exists (or say that it is not there).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tiergate.cli.main import COMMANDS

ROOT = Path(__file__).resolve().parent.parent

# A capability the README might name, the command that delivers it.
_CAPABILITIES = {"simulat": "simulate", "karpenter": "render"}
_NOT_YET = "not there yet"


def _tracked_text_files() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    return [ROOT / n for n in names if Path(n).suffix in {".py", ".md", ".yaml", ".toml", ""}]


def test_no_tracked_file_cites_the_shared_folder_beside_the_project() -> None:
    citing = [
        str(path.relative_to(ROOT))
        for path in _tracked_text_files()
        if path.is_file()
        and path != Path(__file__)  # its patterns name what they look for
        and re.search(
            r"\.\./shared/|shared/reference/|``reference/", path.read_text(errors="replace")
        )
    ]
    assert citing == []


def test_the_readme_introduction_names_only_commands_that_exist() -> None:
    intro = ROOT.joinpath("README.md").read_text().split("## Quick start")[0]
    sentences = re.split(r"(?<=[.:;])\s+", " ".join(intro.split()))
    for word, command in _CAPABILITIES.items():
        if command in COMMANDS:
            continue
        claims = [s for s in sentences if word in s.lower() and _NOT_YET not in s]
        assert claims == [], f"README names {word!r} before `tiergate {command}` exists"


def test_every_command_the_readme_table_lists_exists() -> None:
    readme = ROOT.joinpath("README.md").read_text()
    listed = set(re.findall(r"^\| `tiergate ([a-z][a-z-]*)", readme, flags=re.MULTILINE))
    assert listed, "the README has a commands table"
    assert listed <= set(COMMANDS)
