"""Hostile fleet specs: the repository's examples mutated, and YAML written to hurt.

Hypothesis mutates ``examples/*.yaml`` line by line (values swapped for hostile scalars, tags,
aliases, control characters, stray bytes, lines lost, duplicated or shifted) and synthesizes
documents (deep nesting, an alias bomb, huge numbers, bad timestamps, wrong types). Whatever the
file holds, ``load_fleet`` returns a ``Fleet`` or raises ``SpecError`` whose every issue names the
file and, when the file is UTF-8 text, a line; nothing else. Loading runs in a child process
bounded in memory and time (``tests/campaign/spec_worker.py``), so a spec that would hang or
exhaust the machine fails one example instead of the run.

The SIGHUP path (``tiergate.gateway.server._reload``) is tried in process on mutations of a
loopback fleet: it may reject a spec (logged), never raise, and the gateway keeps answering.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from hypothesis import example, given
from hypothesis import strategies as st

from tests.campaign.bounds import campaign_settings
from tests.campaign.spec_worker import Outcome, SpecLoader
from tests.gateway.helpers import fleet_yaml, refused_url, tier
from tiergate.gateway.app import create_app
from tiergate.gateway.server import _reload
from tiergate.gateway.state import STATE
from tiergate.spec import parse_fleet
from tiergate.spec.loader import MAX_SPEC_BYTES

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = {path.name: path.read_text() for path in sorted((ROOT / "examples").glob("*.yaml"))}
MAX_EXAMPLES = 200

HOSTILE_SCALARS = [
    "!!int abc",
    "!!float nope",
    "!!timestamp 2026-13-45",
    "2026-02-30",
    "2026-02-30T25:61:00Z",
    "!!binary '%%%'",
    "!!python/object/apply:os.system ['true']",
    "!!set {a, b}",
    "!!omap [a: 1]",
    "!custom tag",
    "*nowhere",
    "&a [*a]",
    "9" * 5000,
    "1e999999",
    "-0x8000000000000000000000000000000000",
    "0o7777777777777777777777777777",
    "1_000_000_000_000_000_000_000",
    '"1"',
    "off",
    "yes",
    "~",
    ".nan",
    "-.inf",
    "[]",
    "{}",
    "[1, [2, [3]]]",
    '"\\x00"',
    '"\\u0007"',
    '"\\ud800"',
    "? a",
    "@reserved",
    "`tick",
    "{a: 1, a: 2}",
    "${}",
    "${NOT_SET}",
    "${BAD-NAME}",
    "$${literal}",
]
CONTROL = ["\x00", "\x01", "\x07", "\x08", "\x0b", "\x1b", "\x7f", "\x85", "\u2028", "\ufeff"]
RAW_BYTES = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x00"]


def laughs(levels: int, width: int) -> str:
    """An alias bomb: each level a list of ``width`` aliases of the one before."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    return "\n".join(lines) + f"\nmodels: *l{levels - 1}\n"


def nested(depth: int, *, flow: bool) -> str:
    if flow:
        return "models: " + "[" * depth + "]" * depth + "\n"
    return "models:\n" + "".join(" " * (2 * i) + f"- k{i}:\n" for i in range(depth))


SEED = EXAMPLES["seed-3tier.yaml"]
# The hostile specs that earlier found failures (issue #14); each is tried on every run.
KNOWN = [
    SEED.replace("priority: 1", "priority: \x07"),
    SEED.replace("priority: 1", 'priority: "1"'),
    SEED.replace("priority: 1", "priority: !!int abc"),
    SEED.replace("priority: 1", "priority: " + "9" * 5000),
    SEED.replace("intervalMs: 10000", "intervalMs: !!timestamp 2026-13-45"),
    SEED.replace("intervalMs: 10000", "intervalMs: 2026-02-30"),
    EXAMPLES["governed-fleet.yaml"].replace("keys: auto", "keys: off"),
    nested(2000, flow=True),
    nested(500, flow=False),
    laughs(9, 9),
]


@st.composite
def mutated_specs(draw: st.DrawFn, texts: dict[str, str] | None = None) -> bytes:
    """An example spec with one to three mutations, as the file's bytes."""
    texts = texts or EXAMPLES
    lines = texts[draw(st.sampled_from(sorted(texts)))].splitlines(keepends=True)
    raw: list[tuple[int, bytes]] = []
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, max(0, len(lines) - 1)))
        line = lines[at] if lines else "\n"
        op = draw(st.sampled_from(["value", "control", "bytes", "drop", "twice", "shift", "type"]))
        if op == "value" and ":" in line:
            key = line.split(":", 1)[0]
            lines[at] = f"{key}: {draw(st.sampled_from(HOSTILE_SCALARS))}\n"
        elif op == "value" and line.lstrip().startswith("- "):
            indent = line[: len(line) - len(line.lstrip())]
            lines[at] = f"{indent}- {draw(st.sampled_from(HOSTILE_SCALARS))}\n"
        elif op == "control":
            col = draw(st.integers(0, len(line)))
            lines[at] = line[:col] + draw(st.sampled_from(CONTROL)) + line[col:]
        elif op == "bytes":
            raw.append((at, draw(st.sampled_from(RAW_BYTES))))
        elif op == "drop" and lines:
            del lines[at]
        elif op == "twice":
            lines.insert(at, line)
        elif op == "shift":
            lines[at] = " " * draw(st.integers(1, 3)) + line
        elif op == "type" and ":" in line:
            key = line.split(":", 1)[0]
            kind = draw(st.sampled_from(["[a, b]", "{a: 1}", "- x", "|\n  text", ">-"]))
            lines[at] = f"{key}: {kind}\n"
    data = [line.encode("utf-8", "surrogatepass") for line in lines]
    for at, chunk in raw:
        if at < len(data):
            data[at] = chunk + data[at]
    return b"".join(data)


_synthesized = st.one_of(
    st.builds(laughs, st.integers(2, 6), st.integers(2, 6)).map(str.encode),
    st.builds(nested, st.integers(1, 3000), flow=st.booleans()).map(str.encode),
    st.sampled_from(HOSTILE_SCALARS).map(lambda s: f"models: {s}\n".encode()),
    st.sampled_from(HOSTILE_SCALARS).map(lambda s: f"{s}\n".encode()),
    st.binary(max_size=200),
)


@pytest.fixture(scope="module")
def loader(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpecLoader]:
    spec_loader = SpecLoader(tmp_path_factory.mktemp("specs"))
    yield spec_loader
    spec_loader.close()


def problems_of(outcome: Outcome, path: str, data: bytes) -> list[tuple[str, str]]:
    """(kind, detail) of each thing wrong with how the loader took ``data``."""
    if outcome.kind == "other":
        return [(f"{outcome.message.split(':', 1)[0]} at {outcome.where}", outcome.message)]
    found = []
    try:
        data.decode("utf-8")
        text = True
    except UnicodeDecodeError:
        text = False
    for file, line, _column, field_path, message in outcome.issues:
        if file != path:
            found.append(("an issue names another file", f"{file}: {message}"))
        # A file over the size limit is refused whole, before any line is read.
        if text and line < 1 and len(data) <= MAX_SPEC_BYTES:
            found.append((f"an issue without a line: {message[:40]}", f"{field_path}: {message}"))
    return found


def test_hostile_specs_raise_only_spec_errors_naming_file_and_line(loader: SpecLoader) -> None:
    failures: dict[str, list[tuple[str, bytes]]] = {}

    @campaign_settings(MAX_EXAMPLES)
    @given(st.one_of(mutated_specs(), _synthesized))
    def campaign(data: bytes) -> None:
        outcome, path = loader.load(data)
        for kind, detail in problems_of(outcome, path, data):
            seen = failures.setdefault(kind, [])
            if len(seen) < 3 and all(detail != d for d, _ in seen):
                seen.append((detail, data))  # a few distinct messages of each kind

    for known in KNOWN:
        campaign = example(known.encode("utf-8", "surrogatepass"))(campaign)
    campaign()

    report = "\n\n".join(
        kind + "".join(f"\n  {d[:200]}\n    with: {data[:300]!r}" for d, data in seen)
        for kind, seen in failures.items()
    )
    assert not failures, f"{len(failures)} distinct failures:\n\n{report}"


LOOPBACK = fleet_yaml(
    [tier("main", refused_url(), healthCheck={"endpoint": "/health", "intervalMs": 60000})],
    gateway={"maxBodyBytes": 1024, "drainTimeoutMs": 100},
)


def test_sighup_reload_of_hostile_specs_never_raises_and_keeps_serving(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    loop = asyncio.new_event_loop()
    app = create_app(parse_fleet(LOOPBACK, "loopback.yaml", env={}))
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    failures: dict[str, tuple[str, bytes]] = {}
    spec = tmp_path / "fleet.yaml"

    @campaign_settings(40)
    @given(mutated_specs({"loopback.yaml": LOOPBACK}))
    def campaign(data: bytes) -> None:
        spec.write_bytes(data)
        try:
            loop.run_until_complete(_reload(app, spec))
        except Exception as exc:  # noqa: BLE001 - what escapes the SIGHUP handler is reported
            kind = f"{type(exc).__name__}: {str(exc)[:80]}"
            failures.setdefault(kind, (repr(exc), data))

    try:
        for value in ("\x07", '"1"', "!!int abc", "9" * 5000, "!!timestamp 2026-13-45"):
            known = LOOPBACK.replace("intervalMs: 60000", f"intervalMs: {value}")
            campaign = example(known.encode())(campaign)
        campaign()
        serving = app[STATE].router.fleet
    finally:
        loop.run_until_complete(runner.cleanup())
        loop.close()

    assert not failures, "\n".join(f"{k}\n  {v[1][:300]!r}" for k, v in failures.items())
    assert serving.tiers, "the gateway lost its fleet"
    unexpected = [r for r in caplog.records if not r.getMessage().startswith("reload rejected")]
    assert not unexpected, [r.getMessage()[:300] for r in unexpected]
