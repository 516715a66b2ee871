"""The tracking plan (``events.yaml``): the events the business sends, their properties, and optionally the
customer attributes, declared once so that ``validate`` and the engine can refuse a name that no event
will ever carry.

::

    events:
      session_start:                          # an event with no properties the journeys read
      add_to_cart:
        properties: [cart_id, product, price]
      purchase:
        description: an order was paid
        properties: [amount, cart_id, category]
    attributes: [first_name, first_purchase_at, vulnerable]   # optional

A workspace has at most one, found like ``policy.yaml``: in the folder of its journey files or the folder
above it. Rules, each broken one reported as ``file:line:column: message``: the keys are ``events``
(required) and ``attributes``; an event is a name with nothing under it, or a mapping of ``properties`` (a
list of names) and ``description``; a property or attribute is listed once. Without ``attributes:`` the
customer attributes are not checked against the plan (the built-in ones, ``email``, ``consent_sms`` ...,
never need listing).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.language._yamlio import (
    Locations,
    Problem,
    SpecError,
    data_path,
    dotted,
    load_yaml,
    read_text,
)

CATALOG_FILES = ("events.yaml", "events.yml")
#: Events the engine records itself (``ingest._feedback``: the opens and clicks of tracked email), with
#: their properties. They never need declaring, and a journey reads them like any event.
ENGINE_EVENTS: dict[str, frozenset[str]] = {
    "email_open": frozenset({"message", "journey", "version", "step", "channel"}),
    "email_click": frozenset({"message", "journey", "version", "step", "channel", "url"}),
}
Name = str


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class EventSpec(_Model):
    description: str | None = None
    properties: list[Name] = Field(default_factory=list)


class _CatalogModel(_Model):
    events: dict[Name, EventSpec | None]
    attributes: list[Name] | None = None


@dataclass(frozen=True)
class EventCatalog:
    """A loaded tracking plan: event name -> its properties; the attributes, when declared."""

    file: str
    events: dict[str, frozenset[str]]
    attributes: frozenset[str] | None


def load_catalog(path: str | Path) -> EventCatalog:
    """Read and check one ``events.yaml``; raises ``SpecError`` listing every problem."""
    path = Path(path)
    return load_catalog_text(read_text(path), str(path))


def load_catalog_text(text: str, file: str) -> EventCatalog:
    data, locations = load_yaml(text, file)
    if not isinstance(data, dict):
        raise SpecError(
            [Problem(file, 1, 1, "a tracking plan is a mapping with the keys events and attributes")]
        )
    try:
        model = _CatalogModel.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_problems(exc, data, locations, file)) from None
    problems: list[Problem] = []

    def once(names: list[str], path: tuple[str | int, ...], what: str) -> frozenset[str]:
        seen: set[str] = set()
        for i, name in enumerate(names):
            if name in seen or not name.strip():
                loc = locations.of((*path, i))
                message = f"{what} {name!r} is listed twice" if name in seen else f"an empty {what} name"
                problems.append(Problem(file, loc.line, loc.column, message))
            seen.add(name)
        return frozenset(seen)

    events = {
        name: once(spec.properties if spec else [], ("events", name, "properties"), "property")
        for name, spec in model.events.items()
    }
    attributes = None if model.attributes is None else once(model.attributes, ("attributes",), "attribute")
    if problems:
        raise SpecError(problems)
    return EventCatalog(file, events, attributes)


def find_catalog(journey_files: list[Path]) -> Path | None:
    """The ``events.yaml`` of a set of journey files: in a journey file's folder or the folder above it.
    Two different ones for one workspace are refused (``SpecError``)."""
    found: dict[Path, Path] = {}  # where it really is -> the path to show (as the journeys were named)
    for journey in journey_files:
        folders = [journey.parent, journey.parent / ".."]
        candidates = [folder / name for folder in folders for name in CATALOG_FILES]
        for candidate in candidates:
            if candidate.is_file():
                found.setdefault(candidate.resolve(), Path(os.path.normpath(candidate)))
                break
    if len(found) > 1:
        listing = ", ".join(str(p) for p in found.values())
        raise SpecError(
            [
                Problem(
                    str(next(iter(found.values()))),
                    1,
                    1,
                    f"one tracking plan per workspace, found: {listing}",
                )
            ]
        )
    return next(iter(found.values()), None)


def catalog_for(journey_files: list[Path]) -> tuple[EventCatalog | None, list[Problem]]:
    """The loaded tracking plan of a set of journey files (None without one) and its problems."""
    try:
        path = find_catalog([f for f in journey_files if f.exists()])
        return (load_catalog(path) if path is not None else None), []
    except SpecError as exc:
        return None, list(exc.problems)


_KEYS: dict[tuple[str | int, ...], list[str]] = {
    (): ["events", "attributes"],
    ("events", "*"): ["properties", "description"],
}


def _problems(exc: ValidationError, data: Any, locations: Locations, file: str) -> list[Problem]:
    problems: list[Problem] = []
    for error in exc.errors():
        path = data_path(error["loc"], data)
        kind = error["type"]
        if kind == "none_required":  # "name: <nothing>" is the other member of the union
            continue
        loc = locations.of(path, key=kind == "extra_forbidden")
        where = dotted(path)
        if kind == "extra_forbidden" and path:
            shape = tuple(path[:-1]) if len(path) != 3 else ("events", "*")
            allowed = _KEYS.get(shape, [])
            close = difflib.get_close_matches(str(path[-1]), allowed, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f" (expected one of: {', '.join(allowed)})"
            message = f"unknown key {path[-1]!r}{hint}"
        elif kind == "missing":
            message = f"missing required key {error['loc'][-1]!r} in {where}"
        elif kind in ("string_type", "str_type"):
            message = f"{where}: expected a name (text), got {error.get('input')!r}"
        elif kind in ("list_type",):
            message = f"{where}: expected a list of names, e.g. [amount, cart_id]"
        elif kind == "dict_type" and tuple(path) == ("events",):
            message = "events: expected a mapping of event names, e.g. purchase: {properties: [amount]}"
        elif kind in ("dict_type", "model_type", "model_attributes_type"):
            message = f"{where}: expected a mapping (properties: [...], description: ...) or nothing"
        else:
            message = f"{where}: {str(error['msg']).removeprefix('Value error, ')}"
        problem = Problem(file, loc.line, loc.column, message)
        if problem not in problems:
            problems.append(problem)
    problems.sort(key=lambda p: (p.line, p.column))
    return problems
