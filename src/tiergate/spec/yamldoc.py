"""YAML loading that remembers where every key and value came from.

The fleet spec's errors must name file, line and column, so the document is composed into
PyYAML's node graph (which carries marks) and built into plain Python data by hand, recording
the position of each key and value by its field path. ``${ENV}`` references in string values are
resolved here too, since only here do we still know where each string stood.

Every failure of reading the text becomes a :class:`SpecError` with a line and column, and the
work is bounded by the text's size: nesting is limited while composing (PyYAML's composer
recurses), and values reached again through aliases count against a budget, since a few hundred
bytes of nested aliases otherwise expand to gigabytes ("billion laughs").
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

import yaml

from tiergate.errors import SpecError, SpecIssue

FieldPath = tuple[str | int, ...]

# ``$${`` is an escaped literal ``${``; ``${NAME}`` and ``${NAME:-default}`` are references.
_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_DEPTH = 64
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
# Values built again because an alias (``*name``) or a merge key (``<<``) reached them a second
# time. Real specs reuse a few blocks; a budget far above that stops exponential expansion.
MAX_ALIASED_VALUES = 10_000
# Values (scalars, lists, mappings, alias uses) written in one file; real specs hold hundreds.
MAX_VALUES = 50_000
_HIDDEN = "(the value from the environment)"
_MIN_REDACTED = 4


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
    env_values: set[str] = field(default_factory=set)

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

    def from_env(self, path: FieldPath) -> bool:
        """Whether the value at ``path``, or any value inside it, came from ``${ENV}``."""
        size = len(path)
        return any(found[:size] == path for found in self.interpolated)

    def redact(self, issue: SpecIssue) -> SpecIssue:
        """``issue`` without any value substituted from the environment in its message.

        Messages avoid showing such values where they stand; this catches the rest (a check
        naming a model whose name came from the environment). Values under
        :data:`_MIN_REDACTED` characters are left, since replacing "1" or "on" everywhere would
        garble messages and such values are no secrets.
        """
        message = issue.message
        for value in sorted(self.env_values, key=len, reverse=True):
            if len(value) >= _MIN_REDACTED:
                message = message.replace(repr(value)[1:-1], _HIDDEN)
                message = message.replace(value, _HIDDEN)
        if message == issue.message:
            return issue
        return SpecIssue(issue.file, issue.line, issue.column, issue.path, message)


def format_path(path: FieldPath) -> str:
    """``("models", 1, "provider")`` → ``models[1].provider``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def parse_yaml(text: str, file: str, env: Mapping[str, str]) -> Document:
    """Parse ``text`` into a :class:`Document`; raise :class:`SpecError` on YAML errors.

    Problems that do not stop parsing (duplicate keys, missing environment variables, scalars
    that cannot be read as their type) are collected in ``Document.issues`` so that they are
    reported together with validation errors.
    """
    try:
        loader = _SpecLoader(text)
    except yaml.reader.ReaderError as exc:
        # The reader checks the whole text before parsing starts.
        raise SpecError([_character_issue(exc, file, text)]) from exc
    try:
        root = loader.get_single_node()
        doc = Document(file=file, data=None)
        if root is not None:
            doc.data = _Builder(loader, doc, env).build(root, (), 0)
    except _LimitError as exc:
        mark = exc.problem_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        raise SpecError([SpecIssue(file, line, column, "", exc.problem or "")]) from exc
    except yaml.MarkedYAMLError as exc:
        raise SpecError([_syntax_issue(exc, file, text)]) from exc
    except yaml.YAMLError as exc:
        raise SpecError([SpecIssue(file, 1, 1, "", f"YAML error: {exc}")]) from exc
    finally:
        loader.dispose()
    return doc


class _LimitError(yaml.MarkedYAMLError):
    """The document exceeds a bound of the loader (not a syntax error)."""


class _SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans and bounded nesting.

    Only ``true`` and ``false`` are booleans: YAML 1.1 also reads ``on``, ``off``, ``yes`` and
    ``no`` as booleans, so ``keys: off`` would arrive as ``False``. No field of
    the spec is a boolean that would miss them (pydantic still reads "yes" as true).
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0
        self._nodes = 0

    def _limit(self, problem: str) -> _LimitError:
        event = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in the stubs
        return _LimitError(problem=problem, problem_mark=event.start_mark)

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        # The composer recurses once per level: 1,000 nested brackets would exhaust Python's
        # stack (RecursionError) before the builder's depth check saw them. The count bounds
        # the memory of the node graph (hundreds of bytes per value), spent before building.
        self._depth += 1
        self._nodes += 1
        try:
            if self._depth > _MAX_DEPTH:
                raise self._limit(f"nesting deeper than {_MAX_DEPTH} levels")
            if self._nodes > MAX_VALUES:
                raise self._limit(
                    f"more than {MAX_VALUES:,} values: a fleet spec holds at most that many"
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


# Class setup, as PyYAML's own loaders do it: the 1.1 boolean resolver out, 1.2's in.
_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _character_issue(exc: yaml.reader.ReaderError, file: str, text: str) -> SpecIssue:
    # Lines counted as PyYAML's marks count them, so that the position matches other errors.
    breaks = list(_LINE_BREAK.finditer(text, 0, exc.position))
    line = len(breaks) + 1
    column = exc.position - (breaks[-1].end() if breaks else 0) + 1
    code = exc.character if isinstance(exc.character, int) else ord(str(exc.character))
    return SpecIssue(
        file,
        line,
        column,
        _field_at(yaml.reader.Reader.NON_PRINTABLE.sub(" ", text), file, Position(line, column)),
        f"non-printable character U+{code:04X} is not allowed in YAML; inside double quotes "
        f'it can be written as "\\u{code:04X}"',
    )


def _field_at(text: str, file: str, where: Position) -> str:
    """The field whose key or value starts last at or before ``where``, or ``""``.

    The reader refuses the whole text before it is parsed, so the field of a bad character is
    found by parsing the text again with such characters blanked out.
    """
    try:
        doc = parse_yaml(text, file, {})
    except SpecError:
        return ""
    before = [
        ((found.line, found.column), path)
        for table in (doc.key_positions, doc.value_positions)
        for path, found in table.items()
        if (found.line, found.column) <= (where.line, where.column)
    ]
    return format_path(max(before, key=lambda item: item[0])[1]) if before else ""


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


class _UnreadableError(Exception):
    """A scalar whose text its tag's type cannot hold; the message says which."""


class _Builder:
    """Builds plain data from PyYAML nodes while recording positions into a Document."""

    def __init__(self, loader: yaml.SafeLoader, doc: Document, env: Mapping[str, str]) -> None:
        self._loader = loader
        self._doc = doc
        self._env = env
        self._built: set[int] = set()  # ids of nodes built once (the root keeps them alive)
        self._open: set[int] = set()  # ids of the nodes being built: an alias to one is a cycle
        self._aliased = 0

    def build(self, node: yaml.Node, path: FieldPath, depth: int) -> object:
        self._doc.value_positions[path] = _position(node.start_mark)
        if depth > _MAX_DEPTH:
            self._doc.issues.append(self._doc.issue(path, f"nesting deeper than {_MAX_DEPTH}"))
            return None
        if id(node) in self._open:
            self._doc.issues.append(
                self._doc.issue(path, "an alias refers to a value that contains it", of_key=True)
            )
            return None
        self._count(node, path)
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            self._open.add(id(node))
            try:
                if isinstance(node, yaml.MappingNode):
                    return self._mapping(node, path, depth)
                return [
                    self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)
                ]
            finally:
                self._open.discard(id(node))
        value = self._scalar(node, path)
        if isinstance(value, str) and "$" in value:
            return self._interpolate(value, path)
        return value

    def _count(self, node: yaml.Node, path: FieldPath) -> None:
        """Stop when aliases have made the document build more than its budget of values."""
        if id(node) not in self._built:
            self._built.add(id(node))
            return
        self._aliased += 1
        if self._aliased > MAX_ALIASED_VALUES:
            raise SpecError(
                [
                    *self._doc.issues,
                    # At the section's key: an aliased value's own position is its anchor's.
                    self._doc.issue(
                        path[:1],
                        f"aliases expand to more than {MAX_ALIASED_VALUES:,} values; "
                        "a spec may repeat at most that many values through aliases (*name) "
                        "and merge keys (<<)",
                        of_key=True,
                    ),
                ]
            )

    def _scalar(self, node: yaml.Node, path: FieldPath) -> object:
        """The scalar's value, or None with an issue when its tag's type cannot hold it."""
        try:
            return self._construct(node)
        except _UnreadableError as exc:
            self._doc.issues.append(self._doc.issue(path, str(exc)))
            self._doc.unresolved.add(path)  # the None left behind is not a second error
            return None

    def _construct(self, node: yaml.Node) -> object:
        try:
            return self._loader.construct_object(node)
        except yaml.MarkedYAMLError:
            raise  # PyYAML located it; parse_yaml reports it
        except (ValueError, KeyError, TypeError, OverflowError, AttributeError) as exc:
            # Resolved or explicit tags whose text the type rejects, as PyYAML's constructors
            # fail on them: 2001-02-30 (a timestamp: ValueError), !!timestamp x (AttributeError),
            # !!int abc, !!bool maybe (KeyError), an integer over Python's 4,300-digit limit.
            raise _UnreadableError(_unreadable(node, exc)) from exc

    def _mapping(self, node: yaml.MappingNode, path: FieldPath, depth: int) -> dict[str, object]:
        own = sum(1 for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge")
        self._loader.flatten_mapping(node)  # resolves YAML merge keys (<<), placed first
        merged = len(node.value) - own
        result: dict[str, object] = {}
        own_keys: set[str] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key = self._key(key_node, path)
            if key is None:
                continue
            child = (*path, key)
            if index >= merged:
                if key in own_keys:
                    self._duplicate(key_node, child, key)
                    continue
                own_keys.add(key)  # an explicit key overrides one brought in by a merge
            self._doc.key_positions[child] = _position(key_node.start_mark)
            result[key] = self.build(value_node, child, depth + 1)
        return result

    def _key(self, node: yaml.Node, path: FieldPath) -> str | None:
        """The key's text, or None (the entry is left out) with an issue at the key."""
        if isinstance(node, yaml.ScalarNode):
            try:
                raw = self._construct(node)
            except _UnreadableError as exc:
                problem = str(exc)
            else:
                return raw if isinstance(raw, str) else str(raw)
        else:
            kind = "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"
            problem = f"expected a key (a name), got {kind}"
        where = _position(node.start_mark)
        self._doc.issues.append(
            SpecIssue(self._doc.file, where.line, where.column, format_path(path), problem)
        )
        return None

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
                self._doc.env_values.add(self._env[name])
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


def _unreadable(node: yaml.Node, exc: Exception) -> str:
    tag = str(node.tag).removeprefix("tag:yaml.org,2002:")
    text = str(node.value)
    digits = sum(c.isdigit() for c in text)
    limit = sys.get_int_max_str_digits()  # Python refuses longer decimal integers (4,300)
    if tag == "int" and limit and digits > limit:
        return f"an integer of {digits:,} digits: at most {limit:,} digits can be read"
    shown = text if len(text) <= 60 else text[:57] + "..."
    reason = f": {exc}" if isinstance(exc, ValueError) and tag == "timestamp" else ""
    hint = " (quote it to make it a string)" if tag == "timestamp" else ""
    return f"cannot read '{shown}' as {_TAG_KINDS.get(tag, '!!' + tag)}{reason}{hint}"


_TAG_KINDS = {
    "timestamp": "a date",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
}


def _position(mark: yaml.Mark) -> Position:
    return Position(mark.line + 1, mark.column + 1)
