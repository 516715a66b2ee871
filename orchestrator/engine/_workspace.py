"""The journeys and templates an engine runs, loaded and checked as a whole.

A workspace is built from journey files (or folders of them). Every journey is validated, its templates
checked against the context the engine provides, and compiled into a plan; all problems of all files are
reported together.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from orchestrator.channels.templates import TemplateRenderer
from orchestrator.config import WorkspaceConfig, unsubscribe_missing
from orchestrator.language import (
    ContactPolicy,
    EventCatalog,
    JourneyPlan,
    KnownNames,
    LoadedJourney,
    Path_,
    Problem,
    SharedMetrics,
    SpecError,
    TemplateSource,
    catalog_for,
    catalog_names,
    check_templates,
    compile_loaded,
    digest_with,
    find_journey_files,
    instance_reads,
    journey_problems,
    load_journey,
    load_journey_text,
    load_shared_metrics_text,
    merged_metrics,
    metric_typos,
    policy_for,
    read_text,
    shared_metric_typos,
    shared_metrics_file,
    template_problems,
    template_reads,
    templates_root_for,
    unknown_names,
)
from orchestrator.language import _references as references


@dataclass
class Workspace:
    plans: list[JourneyPlan] = field(default_factory=list)
    renderers: dict[str, TemplateRenderer] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    # journey id -> the text of the shared metrics file it reads (journeys/metrics.yaml), when there is one
    shared_sources: dict[str, str] = field(default_factory=dict)
    # The contact policy (policy.yaml next to the journeys), when there is one.
    policy: ContactPolicy | None = None

    def plan(self, journey_id: str) -> JourneyPlan:
        for plan in self.plans:
            if plan.id == journey_id:
                return plan
        known = ", ".join(p.id for p in self.plans) or "none"
        raise KeyError(f"no journey {journey_id!r} (loaded: {known})")

    def renderer(self, journey_id: str) -> TemplateRenderer:
        return self.renderers[journey_id]


class _SharedFiles:
    """The shared metrics file that applies to each journey: the nearest ``metrics.yaml`` (or ``.yml``) in
    the journey's folder or above it, read once per file."""

    def __init__(self) -> None:
        self._loaded: dict[Path, tuple[SharedMetrics | None, str, list[Problem]]] = {}

    def for_journey(self, path: Path) -> tuple[SharedMetrics | None, str, list[Problem]]:
        for folder in [path.resolve().parent, *path.resolve().parents]:
            found = shared_metrics_file(folder)
            if found is not None:
                return self._load(found)
        return None, "", []

    def _load(self, path: Path) -> tuple[SharedMetrics | None, str, list[Problem]]:
        if path not in self._loaded:
            try:
                text = read_text(path)
                self._loaded[path] = (load_shared_metrics_text(text, str(path)), text, [])
            except SpecError as exc:
                self._loaded[path] = (None, "", exc.problems)
        return self._loaded[path]


def _check_file(
    path: Path, templates: Path | None, shared_files: _SharedFiles, catalog: EventCatalog | None = None
) -> tuple[LoadedJourney | None, TemplateRenderer | None, SharedMetrics | None, str, list[Problem]]:
    try:
        loaded = load_journey(path)
    except SpecError as exc:
        return None, None, None, "", exc.problems
    shared, shared_text, problems = shared_files.for_journey(path)
    problems = list(problems)
    if shared is not None:
        problems.extend(journey_problems(shared, loaded))
    shared_names = list(shared.metrics) if shared is not None else []
    problems.extend(name_problems(loaded, shared, catalog))
    root = templates or templates_root_for(path)
    if root is None:
        sends = [i for i, s in enumerate(loaded.journey.steps) if s.send is not None]
        if sends:
            problems.append(
                loaded.problem(
                    ("steps", sends[0], "send"), "no templates/ folder found next to or above this journey"
                )
            )
            return loaded, None, shared, shared_text, problems
        root = path.parent
    renderer = TemplateRenderer(root)
    problems.extend(check_templates(loaded, renderer, shared_names))
    if catalog is not None:
        reads = template_reads(loaded, renderer)
        problems.extend(template_problems(loaded, reads, catalog_names(catalog)))
    return loaded, renderer, shared, shared_text, problems


def name_problems(
    loaded: LoadedJourney,
    shared: SharedMetrics | None,
    catalog: EventCatalog | None,
    store: KnownNames | None = None,
) -> list[Problem]:
    """Names the journey reads from outside it that cannot exist: a misspelled metric (always), events,
    properties and attributes the tracking plan does not list (with one), or the store has never seen
    (``store``, for ``validate --db``)."""
    metrics = set(shared.metrics) if shared is not None else set()
    plan = catalog_names(catalog)
    attributes = set(plan.attributes or ()) | set(store.attributes or () if store is not None else ())
    problems = metric_typos(loaded, metrics, attributes)
    if shared is not None:
        problems.extend(shared_metric_typos(shared, attributes))
    if catalog is not None:
        problems.extend(p for p in unknown_names(loaded, metrics, plan) if p not in problems)
    if store is not None:
        vouched = replace(
            store,
            also_events=plan.events or frozenset(),
            also_properties=plan.properties,
            also_attributes=plan.attributes or frozenset(),
        )
        problems.extend(p for p in unknown_names(loaded, metrics, vouched) if p not in problems)
    return problems


@dataclass(frozen=True)
class Routes:
    """What the workspace config can deliver: the channels with a provider (None: all) and the named
    webhook endpoints (None: not checked)."""

    channels: frozenset[str] | None = None
    endpoints: frozenset[str] | None = None


def validate_paths(
    paths: Iterable[str | Path], templates: Path | None = None, routes: Routes | None = None
) -> tuple[list[Path], list[Problem]]:
    """Check every journey file under ``paths``; returns the files and all problems found. With
    ``routes``, a send the workspace config cannot deliver is a problem too."""
    files = find_journey_files(paths)
    problems: list[Problem] = []
    seen: dict[str, Path] = {}
    shared_files = _SharedFiles()
    catalog, catalog_problems = catalog_for(files)
    problems.extend(catalog_problems)
    for path in files:
        if not path.exists():
            problems.append(Problem(str(path), 1, 1, "no such file or folder"))
            continue
        loaded, _, _, _, found = _check_file(path, templates, shared_files, catalog)
        problems.extend(p for p in found if p not in problems)
        if loaded is not None and routes is not None:
            problems.extend(references.route_problems(loaded, routes.channels, routes.endpoints))
        if loaded is not None:
            other = seen.setdefault(loaded.journey.id, path)
            if other != path:
                line, col = loaded.where(("id",))
                problems.append(
                    Problem(str(path), line, col, f"journey id {loaded.journey.id!r} is also used by {other}")
                )
    policy, policy_problems = policy_for(files)
    problems.extend(policy_problems)
    if policy is not None:
        problems.extend(references.policy_problems(policy, catalog))
    return files, problems


def unsubscribe_warnings(
    paths: Iterable[str | Path], config: WorkspaceConfig, templates: Path | None = None
) -> list[Problem]:
    """For ``validate``, against the workspace config: a warning at every marketing email step when email
    goes out through a real provider without an ``unsubscribe`` section (``config.unsubscribe_missing``),
    and at every send step whose templates read ``links.unsubscribe`` when there is no such section (its
    messages would fail). Files that do not load are skipped (``validate_paths`` reports them)."""
    provider = unsubscribe_missing(config)
    configured = config.file.unsubscribe is not None
    if provider is None and configured:
        return []
    warnings: list[Problem] = []
    for path in find_journey_files(paths):
        try:
            loaded = load_journey(path)
        except (SpecError, OSError):
            continue
        if provider is not None:
            warnings.extend(references.unsubscribe_warnings(loaded, provider))
        root = templates or templates_root_for(path)
        if configured or root is None:
            continue
        steps: set[Path_] = set()
        for where, template, line, _, name in template_reads(loaded, TemplateRenderer(root), {"links"}):
            if where[:3] in steps:  # once per step: its first template that reads it
                continue
            steps.add(where[:3])
            warnings.append(
                loaded.problem(
                    where,
                    f"{template} line {line}: links.{name} needs an unsubscribe: section in the workspace "
                    "config; without one every message of this step fails",
                )
            )
    return warnings


def load_workspace(paths: Iterable[str | Path], templates: Path | None = None) -> Workspace:
    """Load and compile every journey under ``paths``; raise ``SpecError`` listing all problems."""
    files = find_journey_files(paths)
    workspace = Workspace()
    problems: list[Problem] = []
    shared_files = _SharedFiles()
    catalog, catalog_problems = catalog_for(files)
    problems.extend(catalog_problems)
    for path in files:
        loaded, renderer, shared, shared_text, found = _check_file(path, templates, shared_files, catalog)
        problems.extend(p for p in found if p not in problems)
        if loaded is None or renderer is None or found:
            continue
        if any(p.id == loaded.journey.id for p in workspace.plans):
            line, col = loaded.where(("id",))
            problems.append(Problem(str(path), line, col, f"journey id {loaded.journey.id!r} is used twice"))
            continue
        workspace.plans.append(_compile(loaded, renderer, shared))
        workspace.renderers[loaded.journey.id] = renderer
        workspace.sources[loaded.journey.id] = loaded.source
        if shared is not None:
            workspace.shared_sources[loaded.journey.id] = shared_text
    workspace.policy, policy_problems = policy_for(files)
    problems.extend(policy_problems)
    if workspace.policy is not None:
        problems.extend(references.policy_problems(workspace.policy, catalog))
    if problems:
        raise SpecError(problems)
    return workspace


def _compile(
    loaded: LoadedJourney, templates: TemplateSource | None, shared: SharedMetrics | None = None
) -> JourneyPlan:
    """The plan, keeping also the properties of ``wait_for`` events that the templates read. With shared
    metrics, the plan's metrics include them, and its digest covers their text: editing a shared metric
    changes the meaning of every journey that reads the file, which then needs a new version."""
    plan = compile_loaded(loaded)
    if shared is not None:
        plan.metrics = merged_metrics(shared, plan.metrics)
        plan.digest = digest_with(plan.digest, sorted(shared.texts.items()))
    if templates is not None:
        for root, props in instance_reads(loaded, templates).items():
            plan.captures.setdefault(root, set()).update(props)
    return plan


def plan_from_source(
    source: str, file: str, templates: TemplateSource | None = None, *, shared_metrics: str | None = None
) -> JourneyPlan:
    """Rebuild the plan of a stored journey version (instances finish on the version they entered), with
    the shared metrics text it was stored with."""
    shared = None if shared_metrics is None else load_shared_metrics_text(shared_metrics, f"{file} metrics")
    return _compile(load_journey_text(source, file), templates, shared)
