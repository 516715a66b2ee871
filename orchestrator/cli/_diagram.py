"""``orchestrator diagram``: a journey's diagram, drawn from its state machine (``JourneyPlan.diagram``), as
Mermaid or DOT text or an SVG image, with the funnel's counts on the steps and the transitions when a store
is given (``--db``)."""

from __future__ import annotations

import sys
from pathlib import Path

from orchestrator.cli._errors import Failure, UsageError
from orchestrator.cli._settings import Args
from orchestrator.engine import load_workspace
from orchestrator.language import DiagramCounts, JourneyPlan, SpecError
from orchestrator.store import Store, open_store


def run_diagram(args: Args) -> int:
    """Write the diagram to stdout or to ``--output``."""
    plan = _plan(args)
    counts = _counts(args.db, plan) if args.db is not None else None
    text = plan.diagram(args.format, counts)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _plan(args: Args) -> JourneyPlan:
    """The journey named by ``JOURNEY``: its file, or its id among ``--journeys``."""
    as_file = Path(args.journey)
    is_file = as_file.suffix in (".yaml", ".yml") and as_file.is_file()
    paths = [str(as_file)] if is_file else list(args.journeys)
    try:
        workspace = load_workspace(paths, args.templates)
    except SpecError as exc:
        raise Failure(f"the journeys are not valid:\n{exc}") from None
    if not workspace.plans:
        raise UsageError(f"no journey files found in {' '.join(paths)}")
    if is_file and len(workspace.plans) == 1:
        return workspace.plans[0]
    try:
        return workspace.plan(args.journey)
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None


def _counts(url: str, plan: JourneyPlan) -> DiagramCounts | None:
    """The counts of ``plan``'s journey version in the store at ``url``; None (with a note) when the store
    has none to give."""
    try:
        store = open_store(url, create=False)
    except FileNotFoundError as exc:
        raise Failure(str(exc)) from None
    try:
        if not store.is_initialised():
            raise Failure("no store with engine tables here; ingest data and run the engine first")
        counts = _funnel_counts(store, plan)
    finally:
        store.dispose()
    if counts is None:
        print(
            f"no step counts for journey {plan.id} version {plan.version} in this store: drawn without them",
            file=sys.stderr,
        )
    return counts


def _funnel_counts(store: Store, journey: JourneyPlan) -> DiagramCounts | None:
    """The funnel of ``journey`` (its id and version) in ``store`` as diagram counts: instances that reached
    each state, and times each (source state, trigger) transition was taken (``measure.journey_funnel``);
    None when that version never ran there or nothing was counted for it."""
    from orchestrator.measure import journey_funnel

    try:
        funnel = journey_funnel(store, journey.id, journey.version)
    except KeyError:
        return None
    if not funnel.counts:
        return None
    return DiagramCounts(funnel.diagram_nodes(), funnel.diagram_edges())
