"""Which files of a source to fetch (include/exclude globs), and whether they fit in DEST.

Globs follow ``fnmatch`` on POSIX paths, as ``huggingface_hub``'s allow/ignore patterns do:
``*`` also matches ``/`` (``*.safetensors`` selects shards in subdirectories), and ``**/``
may match no directory at all (``**/config.json`` selects the top-level one too).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from pathlib import Path

from tiergate.modelcache.errors import SpaceError
from tiergate.modelcache.plan import Plan


def _variants(pattern: str) -> set[str]:
    """``pattern`` and every pattern made from it by dropping some of its ``**/``."""
    found = {pattern}
    index = pattern.find("**/")
    while index != -1:
        for rest in _variants(pattern[index + 3 :]):
            found.add(pattern[:index] + rest)
            found.add(pattern[: index + 3] + rest)
        index = pattern.find("**/", index + 1)
    return found


def matches(path: str, patterns: Iterable[str]) -> bool:
    """Whether the POSIX ``path`` matches any of ``patterns``."""
    return any(fnmatchcase(path, variant) for p in patterns for variant in _variants(p))


def select(plan: Plan, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> Plan:
    """The files of ``plan`` matching an ``include`` glob (all when none is given) and no
    ``exclude`` glob."""
    kept = tuple(
        entry
        for entry in plan.files
        if (not include or matches(entry.path, include)) and not matches(entry.path, exclude)
    )
    return Plan(plan.source, kept)


def human_bytes(count: float) -> str:
    """``count`` bytes for people: ``1.5 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def check_space(dest: Path, plan: Plan, already_present_bytes: int = 0) -> int:
    """Refuse with :class:`SpaceError` unless DEST's filesystem has room for what ``plan`` still
    needs (its bytes less those already present); return the bytes still needed."""
    needed = max(0, plan.total_bytes - already_present_bytes)
    free = shutil.disk_usage(dest).free
    if needed > free:
        raise SpaceError(
            f"{dest}: not enough space: needs {human_bytes(needed)} ({needed} bytes) more, "
            f"{human_bytes(free)} ({free} bytes) free"
        )
    return needed
