"""Loading a fleet spec file: read, parse with positions, validate, check references, resolve."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError

from tiergate.errors import SpecError, SpecIssue
from tiergate.spec.checks import check_references
from tiergate.spec.diagnostics import issues_from_validation
from tiergate.spec.fleet import Fleet, resolve
from tiergate.spec.models import FleetSpec
from tiergate.spec.yamldoc import parse_yaml

MAX_SPEC_BYTES = 1024 * 1024


def load_fleet(path: str | Path, env: Mapping[str, str] | None = None) -> Fleet:
    """Load and resolve the fleet spec at ``path``.

    ``env`` resolves ``${NAME}`` references (the process environment by default). Raises
    :class:`SpecError` listing every problem in the file.
    """
    source = str(path)
    text = _read(Path(path), source)
    return parse_fleet(text, source, os.environ if env is None else env)


def parse_fleet(text: str, source: str, env: Mapping[str, str]) -> Fleet:
    """Validate spec ``text`` (named ``source`` in messages) into a :class:`Fleet`."""
    if not text.strip() or all(
        not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()
    ):
        raise SpecError(
            [
                SpecIssue(
                    source, 1, 1, "", "the file is empty: expected a mapping with a 'models' list"
                )
            ]
        )
    doc = parse_yaml(text, source, env)
    if not isinstance(doc.data, dict):
        raise SpecError(
            [doc.issue((), f"expected a mapping at the top level {_TOP}, got {_kind(doc.data)}")]
        )
    errors = list(doc.issues)
    spec: FleetSpec | None = None
    try:
        spec = FleetSpec.model_validate(doc.data)
    except ValidationError as exc:
        errors.extend(issues_from_validation(exc, doc, FleetSpec))
    checked = check_references(doc)
    errors.extend(checked.errors)
    if errors or spec is None:
        raise SpecError(_unique([doc.redact(issue) for issue in errors]))
    warnings = sorted((doc.redact(w) for w in checked.warnings), key=lambda w: (w.line, w.column))
    return resolve(spec, source, tuple(warnings))


def _read(path: Path, source: str) -> str:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError as exc:
        raise SpecError([SpecIssue(source, 0, 0, "", "no such file")]) from exc
    except IsADirectoryError as exc:
        raise SpecError(
            [SpecIssue(source, 0, 0, "", "is a directory, expected a YAML file")]
        ) from exc
    except OSError as exc:
        raise SpecError([SpecIssue(source, 0, 0, "", f"cannot read: {exc.strerror}")]) from exc
    if len(data) > MAX_SPEC_BYTES:
        # Composing YAML costs hundreds of bytes of memory per value: the size bounds it.
        raise SpecError(
            [SpecIssue(source, 0, 0, "", f"larger than {MAX_SPEC_BYTES:,} bytes, the limit")]
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", errors="replace")) + 1
        raise SpecError(
            [SpecIssue(source, line, column, "", f"not UTF-8 text (byte {exc.start})")]
        ) from exc


_TOP = "(keys such as 'routing' and 'models')"


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return "a number" if isinstance(value, int | float) else type(value).__name__


def _unique(issues: list[SpecIssue]) -> list[SpecIssue]:
    return list(dict.fromkeys(issues))
