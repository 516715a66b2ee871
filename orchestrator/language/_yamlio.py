"""Reading YAML without its traps, keeping where every value came from.

PyYAML implements YAML 1.1, where ``no`` is false, ``NO`` (Norway) is false, ``12:30`` is the number 750
and ``010`` is 8. Journey files are read with the YAML 1.2 core rules instead: only ``true``/``false``
are booleans, numbers are plain decimal (or ``0x``/``0o``) and everything else stays text. Duplicate
keys, merge keys, tags (``!!python/object``, ``!!str``, on any node) and anchors and aliases (``&a``,
``*a``) are errors rather than silent surprises.

Everything the daemon reads (journeys, ``metrics.yaml``, ``policy.yaml``, ``events.yaml``) goes through
``load_yaml``, which bounds what one file can cost before building anything large: the file's size, the
number of nodes, their nesting depth, each scalar's length and each integer's size (``LIMITS``). Anchors
and aliases are refused outright, so an alias bomb never expands; every limit is a ``file:line:column``
error, reached in well under a second and a few megabytes.

``load_yaml`` returns plain data and a ``Locations`` map from paths (tuples of keys and list indexes) to
the line and column of each value and key, so later validation can point at the exact place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.error import Mark
from yaml.events import (
    AliasEvent,
    CollectionStartEvent,
    ScalarEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

from orchestrator.errors import InvalidInputError

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class YamlLimits:
    """What one YAML file may cost. A journey is a few kilobytes and a few hundred nodes."""

    max_bytes: int = 256 * 1024
    max_nodes: int = 10_000
    max_depth: int = 32
    max_scalar_chars: int = 32 * 1024
    # Whole numbers fit a signed 64-bit integer (fields with a smaller range say so themselves).
    min_int: int = -(2**63)
    max_int: int = 2**63 - 1


LIMITS = YamlLimits()


@dataclass(frozen=True)
class Location:
    """1-based line and column of a node; ``style`` is the scalar style (None plain, ``'"'`` etc)."""

    line: int
    column: int
    style: str | None = None
    single_line: bool = True


class SpecError(InvalidInputError, ValueError):
    """One or more mistakes in a journey file, each with file, line and column."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class _Core12Resolver(BaseResolver):
    """Implicit types of the YAML 1.2 core schema, nothing more."""


_Core12Resolver.yaml_implicit_resolvers = {}
_Core12Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Core12Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
_Core12Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)"
        r"|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)
_Core12Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)


class _Refused(InvalidInputError):
    """Something the loader does not compose: an anchor, alias or tag, or a limit passed."""

    def __init__(self, mark: Mark | None, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


class _Loader(Reader, Scanner, Parser, Composer, _Core12Resolver):
    def __init__(self, stream: str, limits: YamlLimits) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        _Core12Resolver.__init__(self)
        self.limits = limits
        self.depth = 0
        self.nodes = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        """Refuse aliases, anchors and tags before composing, and count nodes and depth as they come, so a
        file stops at the first node past a limit (before the tree is built, and long before Python's
        recursion limit)."""
        event = self.peek_event()
        mark = event.start_mark
        if isinstance(event, AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Refused(mark, "anchors and aliases (&name, *name) are not allowed; write the value out")
        tag = getattr(event, "tag", None)
        if tag is not None:
            raise _Refused(mark, f"tag {tag} is not allowed here (tags are not part of the language)")
        limits = self.limits
        self.nodes += 1
        if self.nodes > limits.max_nodes:
            raise _Refused(mark, f"the file has more than {limits.max_nodes} values, the limit")
        if isinstance(event, ScalarEvent) and len(event.value) > limits.max_scalar_chars:
            raise _Refused(mark, f"a value longer than {limits.max_scalar_chars} characters, the limit")
        if isinstance(event, CollectionStartEvent):
            if self.depth >= limits.max_depth:
                raise _Refused(mark, f"values nested deeper than {limits.max_depth} levels, the limit")
            self.depth += 1
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1
        return super().compose_node(parent, index)


class Locations:
    """Where each value (and each mapping key) of a loaded document stands in its file."""

    def __init__(self) -> None:
        self.values: dict[Path_, Location] = {}
        self.keys: dict[Path_, Location] = {}

    def of(self, path: Path_, *, key: bool = False) -> Location:
        """The location of ``path``, or of its nearest ancestor that has one."""
        table = self.keys if key else self.values
        path = tuple(path)
        while path:
            if path in table:
                return table[path]
            if not key and path in self.keys:
                return self.keys[path]
            path = path[:-1]
        return self.values.get((), Location(1, 1))


def _location(node: Node) -> Location:
    style = getattr(node, "style", None)
    return Location(
        node.start_mark.line + 1,
        node.start_mark.column + 1,
        style if isinstance(style, str) else None,
        node.start_mark.line == node.end_mark.line,
    )


def read_text(path: Path, limits: YamlLimits = LIMITS) -> str:
    """The text of a YAML file, refusing one larger than the limit before reading it (``SpecError``)."""
    try:
        with path.open("rb") as handle:
            data = handle.read(limits.max_bytes + 1)
        if len(data) > limits.max_bytes:
            raise SpecError([_too_big(str(path), limits)])
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([Problem(str(path), 1, 1, f"cannot read the file: {exc}")]) from None


def _too_big(file: str, limits: YamlLimits) -> Problem:
    return Problem(file, 1, 1, f"the file is larger than {limits.max_bytes // 1024} KB, the limit")


def load_yaml(text: str, file: str, limits: YamlLimits = LIMITS) -> tuple[Any, Locations]:
    """Parse one YAML document into plain data and its locations; raise ``SpecError`` on any mistake."""
    locations = Locations()
    if len(text) > limits.max_bytes or len(text.encode("utf-8", "surrogatepass")) > limits.max_bytes:
        raise SpecError([_too_big(file, limits)])
    try:
        loader = _Loader(text, limits)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except _Refused as exc:
        line, col = (exc.mark.line + 1, exc.mark.column + 1) if exc.mark else (1, 1)
        raise SpecError([Problem(file, line, col, exc.message)]) from None
    except RecursionError:
        raise SpecError([Problem(file, 1, 1, "values nested too deeply")]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError([Problem(file, line, col, f"YAML syntax: {problem}")]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Problem(file, 1, 1, f"YAML syntax: {exc}")]) from None
    if root is None:
        raise SpecError([Problem(file, 1, 1, "the file is empty")])
    problems: list[Problem] = []
    data = _convert(root, (), locations, problems, file, limits)
    if problems:
        raise SpecError(problems)
    return data, locations


_SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:null",
}


def _convert(
    node: Node, path: Path_, locs: Locations, problems: list[Problem], file: str, limits: YamlLimits
) -> Any:
    loc = _location(node)
    locs.values[path] = loc
    if isinstance(node, ScalarNode):
        if node.tag not in _SCALAR_TAGS:
            problems.append(Problem(file, loc.line, loc.column, f"tag {node.tag} is not allowed here"))
            return None
        try:
            return _scalar(node, limits)
        except ValueError as exc:
            problems.append(Problem(file, loc.line, loc.column, str(exc)))
            return None
    if isinstance(node, SequenceNode):
        return [_convert(item, (*path, i), locs, problems, file, limits) for i, item in enumerate(node.value)]
    if isinstance(node, MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key_loc = _location(key_node)
            if not isinstance(key_node, ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                problems.append(
                    Problem(
                        file,
                        key_loc.line,
                        key_loc.column,
                        "keys must be plain names (merge keys and complex keys are not allowed)",
                    )
                )
                continue
            key = key_node.value
            if key_node.tag != "tag:yaml.org,2002:str" and key_node.style is None and key == "<<":
                problems.append(
                    Problem(file, key_loc.line, key_loc.column, "merge keys (<<) are not allowed")
                )
                continue
            if key in out:
                first = locs.keys[(*path, key)]
                problems.append(
                    Problem(
                        file,
                        key_loc.line,
                        key_loc.column,
                        f"duplicate key {key!r} (first at line {first.line})",
                    )
                )
                continue
            locs.keys[(*path, key)] = key_loc
            out[key] = _convert(value_node, (*path, key), locs, problems, file, limits)
        return out
    problems.append(Problem(file, loc.line, loc.column, "unsupported YAML node"))
    return None


# More digits than any integer inside the limits has, in base 8 (the longest spelling): refused unread.
_MAX_INT_DIGITS = 23


def _scalar(node: ScalarNode, limits: YamlLimits) -> Any:
    value = node.value
    tag = node.tag
    if tag == "tag:yaml.org,2002:bool":
        return value.lower() == "true"
    if tag == "tag:yaml.org,2002:int":
        number = None
        if len(value.lstrip("+-")) <= _MAX_INT_DIGITS:
            if value.startswith("0o"):
                number = int(value[2:], 8)
            elif value.startswith("0x"):
                number = int(value[2:], 16)
            else:
                number = int(value)
        if number is None or not limits.min_int <= number <= limits.max_int:
            shown = value if len(value) <= 24 else f"{value[:20]}... ({len(value)} characters)"
            raise ValueError(
                f"the whole number {shown} is out of range (from {limits.min_int} to {limits.max_int})"
            )
        return number
    if tag == "tag:yaml.org,2002:float":
        lowered = value.lower()
        if lowered.endswith(".inf"):
            return float("-inf") if lowered.startswith("-") else float("inf")
        if lowered == ".nan":
            return float("nan")
        return float(value)
    if tag == "tag:yaml.org,2002:null":
        return None
    return value


def data_path(loc: Any, data: Any) -> Path_:
    """The parts of a validation error's location (pydantic's ``loc``) that are real keys or indexes of
    ``data``. Other parts are union member tags or the names of missing keys, whose place is best shown
    by their parent."""
    path: list[str | int] = []
    node = data
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
            path.append(part)
    return tuple(path)


def dotted(path: Path_, whole: str = "the file") -> str:
    """A path as text for messages: ``steps[2].send.channel`` (``whole`` for the empty path)."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".") or whole
