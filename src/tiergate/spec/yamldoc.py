"""YAML loading that remembers where every key and value came from.

The fleet spec's errors must name file, line and column, so the document is composed into
PyYAML's node graph (which carries marks) and built into plain Python data by hand, recording
the position of each key and value by its field path. ``${ENV}`` references in string values are
resolved here too, since only here do we still know where each string stood.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import yaml

from tiergate.errors import SpecError, SpecIssue

FieldPath = tuple[str | int, ...]

# ``$${`` is an escaped literal ``${``; ``${NAME}`` and ``${NAME:-default}`` are references.
_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_DEPTH = 64


@dataclass(frozen=True, slots=True)
class Position:
    """A 1-based line and column in a file."""

    line: int
    column: int


@dataclass(slots=True)
class Document:
    """A parsed YAML document with the positions of its keys and values by field path."""

    file: str
    data: object
    key_positions: dict[FieldPath, Position] = field(default_factory=dict)
    value_positions: dict[FieldPath, Position] = field(default_factory=dict)
    interpolated: set[FieldPath] = field(default_factory=set)
    unresolved: set[FieldPath] = field(default_factory=set)
    issues: list[SpecIssue] = field(default_factory=list)

    def position(self, path: FieldPath, *, of_key: bool = False) -> Position:
        """Where ``path`` stands; the nearest enclosing node that has a position otherwise."""
        positions = (
            (self.key_positions, self.value_positions)
            if of_key
            else (
                self.value_positions,
                self.key_positions,
            )
        )
        for end in range(len(path), -1, -1):
            for table in positions:
                found = table.get(path[:end])
                if found is not None:
                    return found
        return Position(1, 1)

    def issue(self, path: FieldPath, message: str, *, of_key: bool = False) -> SpecIssue:
        """Build an issue located at ``path``."""
        where = self.position(path, of_key=of_key)
        return SpecIssue(self.file, where.line, where.column, format_path(path), message)


def format_path(path: FieldPath) -> str:
    """``("models", 1, "provider")`` → ``models[1].provider``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def parse_yaml(text: str, file: str, env: Mapping[str, str]) -> Document:
    """Parse ``text`` into a :class:`Document`; raise :class:`SpecError` on YAML syntax errors.

    Problems that do not stop parsing (duplicate keys, missing environment variables) are
    collected in ``Document.issues`` so that they are reported together with validation errors.
    """
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        doc = Document(file=file, data=None)
        if root is not None:
            doc.data = _Builder(loader, doc, env).build(root, (), 0)
    except yaml.MarkedYAMLError as exc:
        raise SpecError([_syntax_issue(exc, file, text)]) from exc
    except yaml.YAMLError as exc:
        raise SpecError([SpecIssue(file, 1, 1, "", f"YAML error: {exc}")]) from exc
    finally:
        loader.dispose()
    return doc


def _syntax_issue(exc: yaml.MarkedYAMLError, file: str, text: str) -> SpecIssue:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = exc.problem or "invalid YAML"
    if exc.context:
        problem = f"{exc.context}, {problem}"
    message = f"YAML syntax error: {problem}"
    hint = lost_indentation_hint(text)
    if hint:
        message += f". {hint}"
    return SpecIssue(file, line, column, "", message)


# Keys that only make sense nested under a section; finding them at column 1 right after an
# empty section header means the document lost its indentation (typically copied from a web
# page that dropped leading spaces, as the seed document did).
_NESTED_KEYS = {
    "routing": ("defaultModel", "strategy", "cascadeOrder", "fallbackConditions"),
    "models": ("- name", "provider", "baseUrl"),
    "healthCheck": ("endpoint", "intervalMs"),
    # Kubernetes objects (a KEDA ScaledObject, as in the seed).
    "metadata": ("name:",),
    "spec": ("scaleTargetRef", "minReplicaCount", "triggers"),
}


def lost_indentation_hint(text: str) -> str:
    """Explain a document whose nested keys stand at column 1, or return ``""``."""
    lines = [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    for index, line in enumerate(lines[:-1]):
        header = line.split("#", 1)[0].rstrip()
        section = header[:-1] if header.endswith(":") else ""
        following = lines[index + 1]
        if section in _NESTED_KEYS and following.startswith(_NESTED_KEYS[section]):
            return (
                f"The lines after '{section}:' start at column 1, but they belong inside it: "
                "this document appears to have lost its indentation (as happens when YAML is "
                "copied from a web page); indent the keys of each section by two spaces"
            )
    return ""


class _Builder:
    """Builds plain data from PyYAML nodes while recording positions into a Document."""

    def __init__(self, loader: yaml.SafeLoader, doc: Document, env: Mapping[str, str]) -> None:
        self._loader = loader
        self._doc = doc
        self._env = env

    def build(self, node: yaml.Node, path: FieldPath, depth: int) -> object:
        self._doc.value_positions[path] = _position(node.start_mark)
        if depth > _MAX_DEPTH:
            self._doc.issues.append(self._doc.issue(path, f"nesting deeper than {_MAX_DEPTH}"))
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        value = self._loader.construct_object(node)
        if isinstance(value, str) and "$" in value:
            return self._interpolate(value, path)
        return value

    def _mapping(self, node: yaml.MappingNode, path: FieldPath, depth: int) -> dict[str, object]:
        own = sum(1 for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge")
        self._loader.flatten_mapping(node)  # resolves YAML merge keys (<<), placed first
        merged = len(node.value) - own
        result: dict[str, object] = {}
        own_keys: set[str] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            raw_key = self._loader.construct_object(key_node)
            key = raw_key if isinstance(raw_key, str) else str(raw_key)
            child = (*path, key)
            if index >= merged:
                if key in own_keys:
                    self._duplicate(key_node, child, key)
                    continue
                own_keys.add(key)  # an explicit key overrides one brought in by a merge
            self._doc.key_positions[child] = _position(key_node.start_mark)
            result[key] = self.build(value_node, child, depth + 1)
        return result

    def _duplicate(self, key_node: yaml.Node, path: FieldPath, key: str) -> None:
        first = self._doc.key_positions[path]
        where = _position(key_node.start_mark)
        self._doc.issues.append(
            SpecIssue(
                self._doc.file,
                where.line,
                where.column,
                format_path(path),
                f"duplicate key '{key}' (first defined at line {first.line})",
            )
        )

    def _interpolate(self, value: str, path: FieldPath) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            name, _, default = match.group(1).partition(":-")
            if not _ENV_NAME.fullmatch(name):
                self._doc.issues.append(
                    self._doc.issue(
                        path,
                        f"invalid environment reference '{match.group(0)}': expected ${{NAME}} "
                        "or ${NAME:-default} with NAME made of letters, digits and underscores",
                    )
                )
                self._doc.unresolved.add(path)
                return ""
            self._doc.interpolated.add(path)
            if name in self._env:
                return self._env[name]
            if ":-" in match.group(1):
                return default
            self._doc.unresolved.add(path)
            self._doc.issues.append(
                self._doc.issue(
                    path, f"environment variable {name} is not set (referenced as ${{{name}}})"
                )
            )
            return ""

        return _REFERENCE.sub(replace, value)


def _position(mark: yaml.Mark) -> Position:
    return Position(mark.line + 1, mark.column + 1)
