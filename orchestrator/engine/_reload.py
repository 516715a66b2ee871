"""Reloading a running daemon's workspace: journeys, templates, the contact policy, shared metrics and the
tracking plan, on SIGHUP and when their files change, validated before anything runs them.

**Noticing a change.** ``WorkspaceFiles.fingerprint`` is the name, size, modification time and inode of
every file the workspace is read from: the journey files (``*.yaml``/``*.yml`` under the journey
folders), the files of their templates folders, and the places a ``policy.yaml``, ``metrics.yaml`` or
``events.yaml`` is looked for (a missing one counts too, so one that appears is noticed), plus any
``extra`` file (a workspace config). It costs a few ``stat`` calls, with no thread and no watcher: the
daemon looks once a second (``--watch``) from its main thread, between its waits. Editors' scratch files
(``.name``, ``name~``, ``.swp``) are not looked at. A change is taken once the files have stood still for
one look (an editor or ``git checkout`` halfway through a write is not judged); SIGHUP takes the files
at once.

**Judging it.** The files are loaded with the checks ``run`` and ``validate`` apply
(``engine._workspace.load_workspace``), then against the store (``store_problems``): a journey whose
meaning changed without a new ``version`` that already ran, a version at or below a retirement, a
migration naming a step its older version lacks. A workspace with no journey is refused too (a folder
emptied by mistake must not pause every journey). Files that changed while they were read are judged
again at the next look.

**A good edit** is handed to the engine (``Engine.replace_workspace``), which runs it from its next tick: a
journey whose version went up registers it and migrates its instances at that tick, exactly as ``run``
does; a journey left out is paused. One log line says what changed (``welcome v1 -> v2``, journeys added
or removed, the policy, the files).

**A broken edit** is one log line at ERROR with every problem at ``file:line:column``, no traceback; the
running workspace keeps running and sending. The same problems are not logged again at every look (SIGHUP,
an explicit request, answers again); a fix is taken at the next look, and says so.

**Templates stand still too.** Jinja reads a template file again when it changes on disk; a running
workspace must not, or a broken template would fail messages before any check. ``pin_templates`` reads
every template of a workspace's folders once, when it is loaded, and its renderers render from those
sources, so the running workspace renders what was validated until a reload replaces it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import jinja2
from jinja2.loaders import split_template_path

from orchestrator.channels.templates import TemplateError
from orchestrator.engine._tick import Engine, failure_text, migration_problems
from orchestrator.engine._workspace import Workspace, load_workspace
from orchestrator.language import (
    WORKSPACE_FILES,
    SpecError,
    find_journey_files,
    load_journey_text,
    templates_root_for,
)
from orchestrator.store import retirement, stored_version, stored_versions

log = logging.getLogger("orchestrator.reload")

#: One file's (size, modification time in ns, inode: a save by rename is a new file), or None when missing.
Stat = tuple[int, int, int] | None
#: Every watched file with its stat, sorted by path: equal fingerprints mean nothing was touched.
Fingerprint = tuple[tuple[str, Stat], ...]

_JOURNEY_SUFFIXES = (".yaml", ".yml")
_SCRATCH_SUFFIXES = ("~", ".swp", ".swx", ".swo", ".tmp", ".part", ".bak", ".orig")

#: How many changed files a reload line names.
MAX_FILES_NAMED = 10


def _scratch(name: str) -> bool:
    return name.startswith(".") or name.endswith(_SCRATCH_SUFFIXES)


def _stat(path: Path) -> Stat:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino) if path.is_file() else (-1, 0, 0)


def _walk(folder: Path, suffixes: tuple[str, ...] | None = None) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not _scratch(name) and (suffixes is None or name.endswith(suffixes)):
                yield Path(root) / name


@dataclass(frozen=True)
class WorkspaceFiles:
    """Where a workspace is read from: journey files or folders, the templates folder (None: the nearest
    ``templates/`` above each journey, as ``run`` finds it), and ``extra`` files watched with them (a
    workspace config, whose checks its ``load`` does)."""

    journeys: tuple[Path, ...]
    templates: Path | None = None
    extra: tuple[Path, ...] = ()

    @classmethod
    def of(cls, journeys: Iterable[str | Path], templates: Path | None = None) -> WorkspaceFiles:
        return cls(tuple(Path(p) for p in journeys), templates)

    def load(self) -> Workspace:
        """The workspace, checked as ``run`` checks it; ``SpecError`` lists every problem."""
        return load_workspace(self.journeys, self.templates)

    def fingerprint(self) -> Fingerprint:
        """Name, size and modification time of every file the workspace is read from (see the module
        docstring)."""
        seen: dict[str, Stat] = {}

        def add(path: Path) -> None:
            seen.setdefault(str(path), _stat(path))

        for path in self.journeys:
            if path.is_dir():
                for found in _walk(path, _JOURNEY_SUFFIXES):
                    add(found)
            else:
                add(path)
        folders: dict[Path, None] = {}  # ordered, without repeats
        templates: dict[Path, None] = {}
        if self.templates is not None:
            templates[self.templates] = None
        for journey in find_journey_files(self.journeys):
            parent = journey.resolve().parent
            folders.update(dict.fromkeys([parent, *parent.parents]))  # metrics.yaml: any folder above
            if self.templates is None:
                root = templates_root_for(journey)
                if root is not None:
                    templates[root] = None
        for folder in folders:
            for name in (*WORKSPACE_FILES, "templates"):
                add(folder / name)
        for root in templates:
            add(root)
            for found in _walk(root):
                add(found)
        for path in self.extra:
            add(path)
        return tuple(sorted(seen.items()))


def changed_files(before: Fingerprint, after: Fingerprint) -> list[str]:
    """The files added, removed or modified between two fingerprints, sorted."""
    old, new = dict(before), dict(after)
    return sorted(name for name in old.keys() | new.keys() if old.get(name) != new.get(name))


class _Snapshot(jinja2.BaseLoader):
    """Template sources read once: what a pinned renderer renders, whatever happens on disk since."""

    def __init__(self, root: Path, sources: dict[str, str]) -> None:
        self.root = root
        self.sources = sources

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        name = "/".join(split_template_path(template))  # "./a.html" is "a.html", as on disk
        if name not in self.sources:
            raise jinja2.TemplateNotFound(template)
        # The file's path, as the disk loader gives it: errors name the template the line is in.
        return self.sources[name], str(self.root / name), lambda: True

    def list_templates(self) -> list[str]:
        return sorted(self.sources)


def pin_templates(workspace: Workspace) -> None:
    """Read every template file under the workspace's template folders now, and render from those
    sources from then on: a file changed on disk changes nothing until a reload (see the module
    docstring). Templates are still compiled when first rendered. A file that cannot be read as a
    template (binary content, a link leaving the folder) is left out: no journey of a valid workspace
    uses it."""
    for renderer in {id(r): r for r in workspace.renderers.values()}.values():
        root = renderer.root.resolve()
        sources: dict[str, str] = {}
        for path in _walk(renderer.root):
            name = path.relative_to(renderer.root).as_posix()
            try:
                sources[name] = renderer.source(name)
            except TemplateError:
                continue
        renderer.environment.loader = _Snapshot(root, sources)


def store_problems(engine: Engine, workspace: Workspace) -> list[str]:
    """``file:line:column: message`` for what the store refuses in ``workspace``: a version that ran with
    another meaning, a version not above its journey's retirement, a migration naming a step its older
    version lacks (the engine would fail these journeys at every tick)."""
    problems: list[str] = []
    with engine.store.connect() as conn:
        for plan in workspace.plans:
            retired = retirement(conn, plan.id)
            if retired is not None and plan.version <= retired.version:
                line, column = _where(workspace, plan.id, plan.file, "version")
                problems.append(
                    f"{plan.file}:{line}:{column}: journey {plan.id!r} was retired at version "
                    f"{retired.version}; give it version {retired.version + 1} to run it again"
                )
            stored = stored_version(conn, plan.id, plan.version)
            if stored is not None and stored.digest != plan.digest:
                line, column = _where(workspace, plan.id, plan.file, "version")
                latest = max(stored_versions(conn, plan.id))
                problems.append(
                    f"{plan.file}:{line}:{column}: journey {plan.id!r} version {plan.version} has changed "
                    f"since it first ran; give the changed journey version {latest + 1}"
                )
            problems.extend(migration_problems(engine, conn, plan))
    return problems


def _where(workspace: Workspace, journey_id: str, file: str, key: str) -> tuple[int, int]:
    try:
        return load_journey_text(workspace.sources[journey_id], file).where((key,))
    except Exception:
        return 1, 1


def describe_changes(before: Workspace, after: Workspace) -> list[str]:
    """What a reload changes, in words: versions, journeys added or removed, the policy."""
    old = {p.id: p for p in before.plans}
    new = {p.id: p for p in after.plans}
    changes = []
    for journey_id, plan in new.items():
        was = old.get(journey_id)
        if was is None:
            changes.append(f"{journey_id} added (v{plan.version})")
        elif was.version != plan.version:
            changes.append(f"{journey_id} v{was.version} -> v{plan.version}")
        elif was.digest != plan.digest:
            changes.append(f"{journey_id} v{plan.version} changed (it has not run yet)")
    for journey_id in old.keys() - new.keys():
        changes.append(f"{journey_id} removed (paused: its customers and queued messages wait for it)")
    was_policy, policy = before.policy, after.policy
    if (was_policy is None) != (policy is None):
        changes.append("policy added" if policy is not None else "policy removed")
    elif was_policy is not None and policy is not None and was_policy.policy != policy.policy:
        changes.append("policy changed")
    return sorted(changes)


class Reloader:
    """Looks at a workspace's files and hands a validated new workspace to the engine (see the module
    docstring). ``check`` is called by the daemon's main thread; the engine takes the workspace at its
    next tick. ``load`` defaults to ``files.load``; a caller that also reads a config passes its own, and an
    ``apply`` that hands the engine what it read besides the workspace (``Engine.replace_delivery``)."""

    def __init__(
        self,
        files: WorkspaceFiles,
        engine: Engine,
        *,
        load: Callable[[], Workspace] | None = None,
        apply: Callable[[Workspace], None] | None = None,
    ) -> None:
        self.files = files
        self.engine = engine
        self.load = load or files.load
        self.apply = apply or engine.replace_workspace
        self.current = engine.workspace  # what the engine runs, or will from its next tick
        self._judged = files.fingerprint()  # the files as last loaded or refused
        self._pending: Fingerprint | None = None  # a change seen once, taken if it stands still
        self._reported: tuple[str, ...] | None = None  # the problems last logged
        self._lock = threading.Lock()

    def check(self, forced: bool = False) -> bool:
        """Look at the files; reload when they changed and stood still since the last look, or at once
        when ``forced`` (SIGHUP). Returns whether a new workspace was handed to the engine."""
        with self._lock:
            now = self.files.fingerprint()
            if not forced:
                if now == self._judged:
                    self._pending = None
                    return False
                if now != self._pending:
                    self._pending = now  # changed: judged at the next look if it stays so
                    return False
            self._pending = None
            return self._reload(now, "sighup" if forced else "files")

    def _reload(self, before: Fingerprint, trigger: str) -> bool:
        workspace: Workspace | None = None
        try:
            workspace = self.load()
            problems = self._problems(workspace)
        except SpecError as exc:
            problems = [str(p) for p in exc.problems]
        except Exception as exc:  # unexpected: one line, as a broken edit, never a traceback
            problems = [f"the workspace could not be loaded: {failure_text(exc)}"]
            log.debug("reload failed", exc_info=True)
        if not problems and workspace is not None:
            pin_templates(workspace)
        after = self.files.fingerprint()
        if after != before:  # written to while being read: judge it again once it stands still
            self._pending = after
            return False
        files = changed_files(self._judged, after)
        self._judged = after
        if problems or workspace is None:
            self._refused(problems, trigger, files)
            return False
        self.apply(workspace)
        changes = describe_changes(self.current, workspace)
        self.current = workspace
        fixed = self._reported is not None
        self._reported = None
        log.info(
            "workspace reloaded%s; the next tick runs it",
            " (the earlier problems are fixed)" if fixed else "",
            extra={
                "fields": {
                    "trigger": trigger,
                    "versions": {p.id: p.version for p in workspace.plans},
                    "changes": changes or ["no journey version changed"],
                    "files": _named(files),
                }
            },
        )
        return True

    def _problems(self, workspace: Workspace) -> list[str]:
        if not workspace.plans:
            found = " ".join(str(p) for p in self.files.journeys)
            return [f"no journey files found in {found}"]
        return store_problems(self.engine, workspace)

    def _refused(self, problems: list[str], trigger: str, files: list[str]) -> None:
        key = tuple(problems)
        if key == self._reported and trigger != "sighup":
            return  # said already; SIGHUP, a request, is answered every time
        self._reported = key
        log.error(
            "workspace not reloaded: %d problem(s); the running journeys keep running",
            len(problems),
            extra={
                "fields": {
                    "trigger": trigger,
                    "versions": {p.id: p.version for p in self.current.plans},
                    "problems": problems,
                    "files": _named(files),
                }
            },
        )


def _named(files: list[str]) -> list[str]:
    if len(files) <= MAX_FILES_NAMED:
        return files
    return [*files[:MAX_FILES_NAMED], f"and {len(files) - MAX_FILES_NAMED} more"]
