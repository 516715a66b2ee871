"""Reading YAML without its traps, keeping where every value came from.

PyYAML implements YAML 1.1, where ``no`` is false, ``NO`` (Norway) is false, ``12:30`` is the number 750
and ``010`` is 8. Journey files are read with the YAML 1.2 core rules instead: only ``true``/``false``
are booleans, numbers are plain decimal (or ``0x``/``0o``) and everything else stays text. Duplicate
keys, merge keys and custom tags are errors rather than silent surprises.

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
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Location:
    """1-based line and column of a node; ``style`` is the scalar style (None plain, ``'"'`` etc)."""

    line: int
    column: int
    style: str | None = None
    single_line: bool = True


class SpecError(ValueError):
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


class _Loader(Reader, Scanner, Parser, Composer, _Core12Resolver):
    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        _Core12Resolver.__init__(self)


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


def load_yaml(text: str, file: str) -> tuple[Any, Locations]:
    """Parse one YAML document into plain data and its locations; raise ``SpecError`` on any mistake."""
    locations = Locations()
    try:
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
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
    data = _convert(root, (), locations, problems, file)
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


def _convert(node: Node, path: Path_, locs: Locations, problems: list[Problem], file: str) -> Any:
    loc = _location(node)
    locs.values[path] = loc
    if isinstance(node, ScalarNode):
        if node.tag not in _SCALAR_TAGS:
            problems.append(Problem(file, loc.line, loc.column, f"tag {node.tag} is not allowed here"))
            return None
        return _scalar(node)
    if isinstance(node, SequenceNode):
        return [_convert(item, (*path, i), locs, problems, file) for i, item in enumerate(node.value)]
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
            out[key] = _convert(value_node, (*path, key), locs, problems, file)
        return out
    problems.append(Problem(file, loc.line, loc.column, "unsupported YAML node"))
    return None


def _scalar(node: ScalarNode) -> Any:
    value = node.value
    tag = node.tag
    if tag == "tag:yaml.org,2002:bool":
        return value.lower() == "true"
    if tag == "tag:yaml.org,2002:int":
        if value.startswith("0o"):
            return int(value[2:], 8)
        if value.startswith("0x"):
            return int(value[2:], 16)
        return int(value)
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


def read_yaml(path: Path) -> tuple[Any, Locations, str]:
    text = path.read_text(encoding="utf-8")
    data, locations = load_yaml(text, str(path))
    return data, locations, text
