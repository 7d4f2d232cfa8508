"""Hostile or broken spec text: always a located SpecError (exit 2), never a traceback or a hang.

Each case is text PyYAML or Python itself refuses (control characters, impossible dates,
explicit tags the value does not fit, integers past Python's digit limit), text that would
exhaust the stack (deep nesting) or memory (aliases expanding exponentially), and values from
the environment that must not be echoed back.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tiergate.cli.main import cli
from tiergate.errors import SpecError
from tiergate.spec import load_fleet, parse_fleet
from tiergate.spec.yamldoc import MAX_ALIASED_VALUES, MAX_VALUES

VALID = """\
routing:
  cascadeOrder: [qwen, claude]
models:
  - name: qwen
    provider: openai-compatible
    baseUrl: http://vllm:8000/v1
    model: Qwen/Qwen3-32B
    costPer1kTokens: 0.001
  - name: claude
    provider: bedrock
    model: anthropic.claude-sonnet-4-20250514-v1:0
    region: us-east-1
    costPer1kTokens: 0.003
"""


def _laughs(levels: int) -> str:
    """A "billion laughs" document: each level repeats the one before nine times."""
    lines = ['lol0: &lol0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels):
        lines.append(f"lol{level}: &lol{level} [" + ",".join([f"*lol{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n" + VALID


def _model(value: str) -> str:
    return VALID.replace("model: Qwen/Qwen3-32B", f"model: {value}")


CHARACTER = 'non-printable character U+{0} is not allowed in YAML; inside double quotes it can be written as "\\u{0}"'

# Each case: the text, then the one issue it must give (file:line:column: field: message).
CASES: dict[str, tuple[str, str]] = {
    "NUL": (_model("Qwen\x00"), "fleet.yaml:7:16: models[0].model: " + CHARACTER.format("0000")),
    "ESC": (
        _model("Qwen\x1b[31m"),
        "fleet.yaml:7:16: models[0].model: " + CHARACTER.format("001B"),
    ),
    "DEL": (_model("Qwen\x7f"), "fleet.yaml:7:16: models[0].model: " + CHARACTER.format("007F")),
    "C1 control": (
        _model("Qwen\x9b"),
        "fleet.yaml:7:16: models[0].model: " + CHARACTER.format("009B"),
    ),
    "impossible date": (
        _model("2001-02-30"),
        "fleet.yaml:7:12: models[0].model: cannot read '2001-02-30' as a date: day is out of "
        "range for month (quote it to make it a string)",
    ),
    "!!int abc": (
        _model("!!int abc"),
        "fleet.yaml:7:12: models[0].model: cannot read 'abc' as an integer",
    ),
    "!!timestamp soon": (
        _model("!!timestamp soon"),
        "fleet.yaml:7:12: models[0].model: cannot read 'soon' as a date (quote it to make it a "
        "string)",
    ),
    "!!bool maybe": (
        _model("!!bool maybe"),
        "fleet.yaml:7:12: models[0].model: cannot read 'maybe' as true or false",
    ),
    "integer over 4,300 digits": (
        VALID.replace("costPer1kTokens: 0.001", "costPer1kTokens: " + "1" * 4301),
        "fleet.yaml:8:22: models[0].costPer1kTokens: an integer of 4,301 digits: at most 4,300 "
        "digits can be read",
    ),
    "1,000-deep flow nesting": (
        _model("[" * 1000 + "]" * 1000),
        "fleet.yaml:7:73: nesting deeper than 64 levels",
    ),
    "1,000-deep flow mappings": (
        _model("{a: " * 1000 + "1" + "}" * 1000),
        "fleet.yaml:7:253: nesting deeper than 64 levels",
    ),
    "billion laughs": (
        _laughs(9),
        f"fleet.yaml:5:1: lol4: aliases expand to more than {MAX_ALIASED_VALUES:,} values; a "
        "spec may repeat at most that many values through aliases (*name) and merge keys (<<)",
    ),
    "too many values": (
        "models: [" + "1," * MAX_VALUES + "1]\n",
        f"fleet.yaml:1:{2 * MAX_VALUES + 4}: more than {MAX_VALUES:,} values: a fleet spec "
        "holds at most that many",
    ),
    "an impossible date as a key": (
        VALID.replace("    costPer1kTokens: 0.001", "    2001-02-30: x"),
        "fleet.yaml:8:5: models[0]: cannot read '2001-02-30' as a date: day is out of range for "
        "month (quote it to make it a string)",
    ),
    "a list as a key": (
        VALID.replace("    costPer1kTokens: 0.001", "    ? [a, b]\n    : 1"),
        "fleet.yaml:8:7: models[0]: expected a key (a name), got a list",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_text_is_a_located_spec_error(case: str) -> None:
    text, expected = CASES[case]
    with pytest.raises(SpecError) as caught:
        parse_fleet(text, "fleet.yaml", env={})
    assert str(caught.value.issues[0]) == expected


def test_an_alias_inside_its_own_anchor_is_named() -> None:
    with pytest.raises(SpecError) as caught:
        parse_fleet("loop: &loop [*loop]\n" + VALID, "fleet.yaml", env={})
    assert [str(issue) for issue in caught.value.issues][1] == (
        "fleet.yaml:1:7: loop[0]: an alias refers to a value that contains it"
    )


@pytest.mark.parametrize("case", [case for case in CASES if case != "too many values"])
def test_check_exits_2_with_the_location(case: str, tmp_path: Path) -> None:
    text, expected = CASES[case]
    spec = tmp_path / "fleet.yaml"
    spec.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(cli, ["check", str(spec)], env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    located = expected.split(": ", 1)[0].replace("fleet.yaml", str(spec))
    assert located + ":" in result.output


def test_check_answers_a_billion_laughs_as_a_process(tmp_path: Path) -> None:
    spec = tmp_path / "laughs.yaml"
    spec.write_text(_laughs(9))  # 9**9 strings once expanded: gigabytes
    done = subprocess.run(
        [sys.executable, "-m", "tiergate", "check", str(spec)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert f"{spec}:5:1: lol4: aliases expand to more than 10,000 values" in done.stderr
    assert "Traceback" not in done.stderr


def test_line_numbers_print_as_numbers(tmp_path: Path) -> None:
    # rich once rendered ":100:" (line 100) as an emoji.
    spec = tmp_path / "fleet.yaml"
    spec.write_text("#\n" * 98 + "models:\n  - name: a\n    provider: openai\n")
    result = CliRunner().invoke(cli, ["check", str(spec)], env={"COLUMNS": "400"})
    assert result.exit_code == 2
    assert f"{spec}:100:5: models[0]: missing required key 'model'" in result.output


def test_a_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "big.yaml"
    spec.write_text(VALID + "#" * (1024 * 1024) + "\n")
    with pytest.raises(SpecError, match=r"big.yaml: larger than 1,048,576 bytes, the limit"):
        load_fleet(spec)


def test_keys_off_unquoted_turns_keys_off() -> None:
    fleet = parse_fleet(VALID + "governance:\n  keys: off\n", "fleet.yaml", env={})
    assert fleet.governance is not None
    assert fleet.governance.keys == "off"


QUOTED_PRIORITIES = VALID.replace(
    "costPer1kTokens: 0.001", "costPer1kTokens: 0.001\n    priority: 2"
).replace("costPer1kTokens: 0.003", 'costPer1kTokens: 0.003\n    priority: "1"')


def test_a_quoted_priority_is_read_as_a_number() -> None:
    # As every integer field reads "1" (which ${ENV} values need); the check once compared
    # 2 with "1" and raised TypeError.
    fleet = parse_fleet(QUOTED_PRIORITIES, "fleet.yaml", env={})
    assert [(tier.name, tier.priority) for tier in fleet.cascade] == [("qwen", 2), ("claude", 1)]
    assert [str(w) for w in fleet.warnings] == [
        "fleet.yaml:2:17: routing.cascadeOrder: cascadeOrder (qwen, claude) disagrees with "
        "priority order (claude, qwen); cascadeOrder wins"
    ]


def test_check_of_a_quoted_priority_reports_instead_of_crashing(tmp_path: Path) -> None:
    spec = tmp_path / "fleet.yaml"
    spec.write_text(QUOTED_PRIORITIES.replace('priority: "1"', 'priority: "first"'))
    result = CliRunner().invoke(cli, ["check", str(spec)], env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    assert f"{spec}:15:15: models[1].priority: expected an integer, got 'first'" in result.output
    spec.write_text(QUOTED_PRIORITIES)
    result = CliRunner().invoke(cli, ["check", str(spec)], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "disagrees with priority order (claude, qwen)" in result.output


SECRET = "sk-live-0123456789abcdef"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            VALID + "tracing:\n  otlpEndpoint: http://otel:4318\n"
            '  headers: ["Authorization: Bearer ${TOKEN}"]\n',
            "fleet.yaml:16:12: tracing.headers: expected a mapping",
        ),
        (
            VALID.replace("cascadeOrder: [qwen, claude]", "cascadeOrder: [qwen, '${TOKEN}']"),
            "fleet.yaml:2:24: routing.cascadeOrder[1]: '(the value from the environment)' names "
            "no model; models: qwen, claude",
        ),
        (
            VALID.replace(
                "    costPer1kTokens: 0.001",
                "    costPer1kTokens: 0.001\n    healthCheck: {endpoint: 'x${TOKEN}'}",
            ),
            "fleet.yaml:9:29: models[0].healthCheck.endpoint: expected a path starting with '/' "
            "or an http(s) URL, got (the value from the environment)",
        ),
    ],
)
def test_values_from_the_environment_are_never_echoed(text: str, expected: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_fleet(text, "fleet.yaml", env={"TOKEN": SECRET})
    assert [str(issue) for issue in caught.value.issues] == [expected]
    assert SECRET not in str(caught.value)
