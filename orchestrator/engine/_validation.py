"""``validate --db``: the checks that need the store, on journey files that are otherwise valid.

- A journey whose file changed meaning while keeping a ``version`` that already ran is an error at its
  ``version:`` line (the engine would refuse to run it).
- Events, event properties and customer attributes that the store has never seen (and the tracking plan
  does not list) are errors at their place, with a did-you-mean: such a journey would match nobody.
  Property keys come from the latest events and attribute keys from the latest-written customers (see
  ``store._catalog``); an empty store checks nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from orchestrator.engine._workspace import _compile, _SharedFiles, name_problems
from orchestrator.language import (
    KnownNames,
    Problem,
    SpecError,
    catalog_for,
    find_journey_files,
    load_journey,
)
from orchestrator.store import Store, seen_names, stored_version, stored_versions


def store_problems(paths: Iterable[str | Path], store: Store) -> tuple[list[Problem], list[str]]:
    """Problems of the journeys under ``paths`` against what ``store`` holds, and notes on what could not
    be checked (an empty store)."""
    files = find_journey_files(paths)
    catalog, _ = catalog_for(files)
    shared_files = _SharedFiles()
    problems: list[Problem] = []
    notes: list[str] = []
    with store.connect() as conn:
        seen = seen_names(conn)
        if not seen.events:
            notes.append("the store has no events yet: event and property names were not checked against it")
        if not seen.has_customers:
            notes.append("the store has no customers yet: attribute names were not checked against it")
        known = KnownNames(
            "the store",
            seen.events or None,
            seen.properties,
            seen.attributes if seen.has_customers else None,
            otherwise=" (a name that is yet to come is declared in the tracking plan, events.yaml)",
        )
        for path in files:
            try:
                loaded = load_journey(path)
            except SpecError:
                continue  # reported by the checks without the store
            shared, _, _ = shared_files.for_journey(path)
            found = name_problems(loaded, shared, catalog, known)
            problems.extend(p for p in found if p not in problems)
            plan = _compile(loaded, None, shared)
            stored = stored_version(conn, plan.id, plan.version)
            if stored is not None and stored.digest != plan.digest:
                latest = max(stored_versions(conn, plan.id))
                problems.append(
                    loaded.problem(
                        ("version",),
                        f"journey {plan.id!r} version {plan.version} has changed since it first ran; bump it "
                        f"to {latest + 1}",
                    )
                )
    return problems, notes
