"""Running journey test files: each case on a simulated clock against a scratch SQLite store, nothing sent.

``run_journey_tests(paths)`` finds the ``*.test.yaml`` files under ``paths``, runs every case and returns
a ``TestRunReport``: per case, passed or its failures (``file:line: customer: expected ...; found ...``);
the files that could not be read; and the coverage of each journey tested: the transitions of its state
machine (``language._machine``) that no case took, its goal never reached, its ``exit_when`` never met.

A case runs the journeys it names (found among the journey files beside the test file, else under the
paths given), with the ``policy.yaml`` and templates beside them: its customers are stored at the start,
each event is ingested at the first tick at or after its time, the engine ticks at the start and every
``tick`` up to the end, and messages go to a ``MemoryAdapter``. Then the expectations are checked against
the store (``_expectations``).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.engine import Workspace, load_workspace
from orchestrator.errors import InvalidInputError, UsageError
from orchestrator.language import (
    NO_STATE,
    TEST_FILE_SUFFIXES,
    JourneyPlan,
    Problem,
    SpecError,
    find_journey_files,
    load_yaml,
    read_text,
)
from orchestrator.store import open_scratch_store
from orchestrator.testing._expectations import Observed, check, step_problems
from orchestrator.testing._test_files import TestCase, TestFile, format_offset, read_test_file
from orchestrator.testing.clock import SimClock
from orchestrator.testing.factories import customer, event
from orchestrator.testing.world import World


@dataclass(frozen=True)
class TestFailure:
    """One unmet expectation (or a problem that stopped a case), at its line of the test file."""

    __test__ = False

    file: str
    line: int
    message: str
    column: int | None = None  # for a mistake in the file itself

    def __str__(self) -> str:
        where = f"{self.line}:{self.column}" if self.column is not None else str(self.line)
        return f"{self.file}:{where}: {self.message}"


@dataclass
class CaseResult:
    """One test case's outcome."""

    file: str
    name: str
    line: int
    failures: list[TestFailure] = field(default_factory=list)
    seconds: float = 0.0
    ticks: int = 0

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "name": self.name,
            "line": self.line,
            "passed": self.passed,
            "failures": [str(f) for f in self.failures],
            "seconds": round(self.seconds, 3),
            "ticks": self.ticks,
        }


@dataclass(frozen=True)
class CoverageGap:
    """A path through a journey that no test took: a transition of its machine, its goal or exit_when."""

    journey: str
    source: str
    dest: str
    label: str

    def __str__(self) -> str:
        if self.source == "":
            return f"not covered: {self.journey}: {self.label}"
        return f"not covered: {self.journey} {self.source} -> {self.dest} ({self.label})"


@dataclass
class TestRunReport:
    """Every case run, the coverage of the journeys tested, and the journeys found without a test."""

    __test__ = False

    cases: list[CaseResult] = field(default_factory=list)
    gaps: list[CoverageGap] = field(default_factory=list)
    untested: list[str] = field(default_factory=list)  # journey ids under the paths that no test runs
    transitions: dict[str, tuple[int, int]] = field(default_factory=dict)  # journey -> (covered, total)
    seconds: float = 0.0

    @property
    def passed(self) -> int:
        return sum(c.passed for c in self.cases)

    @property
    def failed(self) -> int:
        return len(self.cases) - self.passed

    def ok(self, require_coverage: bool = False) -> bool:
        """No case failed (and, with ``require_coverage``, no gap and no untested journey)."""
        return self.failed == 0 and not (require_coverage and (self.gaps or self.untested))

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
            "cases": [c.to_dict() for c in self.cases],
            "coverage": {
                journey: {"covered": covered, "total": total}
                for journey, (covered, total) in self.transitions.items()
            },
            "not_covered": [str(g).removeprefix("not covered: ") for g in self.gaps],
            "untested": self.untested,
        }


def find_test_files(paths: Iterable[str | Path]) -> list[Path]:
    """The test files named, or found (``*.test.yaml``, ``*.test.yml``) under folders; raises
    ``UsageError`` for a path that does not exist or a file that is not a test file."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            candidates = sorted(p for suffix in TEST_FILE_SUFFIXES for p in path.rglob(f"*{suffix}"))
            found.extend(p for p in candidates if "templates" not in p.relative_to(path).parts[:-1])
        elif path.is_file():
            if not path.name.endswith(TEST_FILE_SUFFIXES):
                raise UsageError(f"{path} is not a journey test file (*.test.yaml)")
            found.append(path)
        else:
            raise UsageError(f"{path}: no such file or folder")
    return list(dict.fromkeys(_shown(p) for p in found))


def _shown(path: Path) -> Path:
    """``path`` relative to the working folder when it is inside it (as messages show it)."""
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path


def run_journey_tests(paths: Iterable[str | Path]) -> TestRunReport:
    """Run every test file under ``paths`` (see the module docstring)."""
    given = [Path(p) for p in paths]
    folders = [p for p in given if p.is_dir()]
    runner = JourneyTestRunner(search=folders)
    started = time.perf_counter()
    report = TestRunReport()
    for path in find_test_files(given):
        report.cases.extend(runner.run_file(path))
    report.gaps, report.transitions = runner.coverage()
    tested = set(report.transitions)
    report.untested = sorted(set(runner.journeys_under(folders)) - tested)
    report.seconds = time.perf_counter() - started
    return report


class JourneyTestRunner:
    """Reads test files and runs their cases, keeping what cases share (journey files found by id,
    loaded workspaces) and what they covered. ``search``: more folders to look for journeys in."""

    def __init__(self, search: Iterable[Path] = ()) -> None:
        self.search = list(search)
        self._ids: dict[Path, dict[str, Path]] = {}
        self._workspaces: dict[tuple[Path, ...], Workspace] = {}
        self._plans: dict[str, JourneyPlan] = {}
        self._moves: dict[str, set[tuple[str, str]]] = {}
        self._outcomes: dict[str, set[str]] = {}
        self._unreachable: dict[str, set[tuple[str, str]]] = {}

    # ------------------------------------------------------------------------------------------ files

    def read(self, path: Path) -> TestFile:
        """The file's cases (or its problems)."""
        return read_test_file(path)

    def run_file(self, path: Path) -> list[CaseResult]:
        """Every case of one file; a file that cannot be read is one failed result listing its problems."""
        test_file = self.read(path)
        if test_file.problems:
            return [problem_result(str(path), test_file.problems)]
        results = [self.run_case(case, path) for case in test_file.cases]
        for step, trigger, _ in test_file.unreachable:
            for jid in {j for case in test_file.cases for j in case.journeys}:
                self._unreachable.setdefault(jid, set()).add((step, trigger))
        return results

    def journeys_under(self, folders: Iterable[Path]) -> list[str]:
        """The ids of the journey files under ``folders``."""
        return [jid for folder in folders for jid in self._index(folder)]

    def _index(self, folder: Path) -> dict[str, Path]:
        """Journey id -> file, for the journey files under ``folder`` (files that do not parse are left
        out: loading the one a test names reports its problems)."""
        folder = folder.resolve()
        if folder not in self._ids:
            ids: dict[str, Path] = {}
            for path in find_journey_files([folder]):
                try:
                    data, _ = load_yaml(read_text(path), str(path))
                except SpecError:
                    continue
                if isinstance(data, dict) and isinstance(data.get("id"), str):
                    ids.setdefault(data["id"], path)
            self._ids[folder] = ids
        return self._ids[folder]

    def _journey_files(self, case: TestCase, test_file: Path) -> list[Path]:
        files: list[Path] = []
        for jid in case.journeys:
            known: dict[str, Path] = {}
            for folder in [test_file.parent, *self.search]:
                index = self._index(folder)
                if jid in index:
                    files.append(index[jid])
                    break
                known.update(index)
            else:
                close = difflib.get_close_matches(jid, list(known), n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else f" (found: {', '.join(known) or 'none'})"
                raise _CaseError(case.journeys_line, f"no journey {jid!r} beside the test file{hint}")
        return files

    def _workspace(self, files: list[Path]) -> Workspace:
        key = tuple(files)
        if key not in self._workspaces:
            try:
                self._workspaces[key] = load_workspace(files)
            except SpecError as exc:
                raise _CaseError(0, f"the journeys are not valid:\n{exc}") from None
        return self._workspaces[key]

    # ------------------------------------------------------------------------------------------ cases

    def run_case(self, case: TestCase, test_file: Path) -> CaseResult:
        """Run one case and check its expectations."""
        started = time.perf_counter()
        result = CaseResult(case.file, case.name, case.line, ticks=case.ticks())
        try:
            workspace, plans = self._plans_for(case, test_file)
            problems = [
                TestFailure(case.file, e.line, message)
                for e in case.expectations
                for message in step_problems(e, plans)
            ]
            if problems:
                result.failures = problems
                return result
            with _scratch() as folder:
                seen, moves = self._run(
                    case, dataclasses.replace(workspace, plans=list(plans.values())), folder
                )
        except _CaseError as exc:
            result.failures = [TestFailure(case.file, exc.line or case.line, exc.message)]
            return result
        finally:
            result.seconds = time.perf_counter() - started
        for jid in plans:
            self._plans.setdefault(jid, plans[jid])
            self._moves.setdefault(jid, set()).update(moves.get(jid, ()))
            outcomes = self._outcomes.setdefault(jid, set())
            if any(c.journey_id == jid for c in seen.conversions):
                outcomes.add("goal")
            if any(i.journey == jid and i.reason == "exit_when" for i in seen.instances):
                outcomes.add("exit_when")
        for expectation in case.expectations:
            message = check(expectation, seen)
            if message is not None:
                result.failures.append(TestFailure(case.file, expectation.line, message))
        result.seconds = time.perf_counter() - started
        return result

    def _plans_for(self, case: TestCase, test_file: Path) -> tuple[Workspace, dict[str, JourneyPlan]]:
        """The case's workspace and its journeys' plans (with the case's holdout, if it sets one)."""
        workspace = self._workspace(self._journey_files(case, test_file))
        plans = {jid: workspace.plan(jid) for jid in case.journeys}
        if case.holdout is not None:
            plans = {
                jid: dataclasses.replace(p, journey=p.journey.model_copy(update={"holdout": case.holdout}))
                for jid, p in plans.items()
            }
        return workspace, plans

    def _run(
        self, case: TestCase, workspace: Workspace, folder: Path
    ) -> tuple[Observed, dict[str, set[tuple[str, str]]]]:
        plans = {p.id: p for p in workspace.plans}
        clock = SimClock(case.start)
        with ExitStack() as cleanup:
            store = open_scratch_store(folder / "test.db")  # thrown away with the case: nothing synced
            cleanup.callback(store.dispose)
            world = cleanup.enter_context(World(folder, store=store, clock=clock, workspace=workspace))
            world.add_customers(*(customer(cid, **attributes) for cid, attributes in case.customers.items()))
            pending = list(case.events)
            now = case.start
            while now <= case.end:
                due = 0
                while due < len(pending) and pending[due].at <= now:
                    due += 1
                if due:
                    batch, pending = pending[:due], pending[due:]
                    try:
                        world.add_events(*(event(e.customer, e.name, e.at, **e.properties) for e in batch))
                    except AssertionError as exc:
                        raise _CaseError(batch[0].line, f"events refused: {exc}") from None
                report = world.tick()
                for jid, journey in report.journeys.items():
                    if journey.error is not None:
                        when = format_offset(now, case.start)
                        raise _CaseError(case.line, f"journey {jid} failed at {when}: {journey.error}")
                now = clock.advance(case.tick)
            seen = Observed(case.start, plans, world.instances(), world.messages(), world.conversions())
            moves = {jid: world.transitions_taken(jid) for jid in plans}
        return seen, moves

    # ------------------------------------------------------------------------------------------ coverage

    def coverage(self) -> tuple[list[CoverageGap], dict[str, tuple[int, int]]]:
        """The paths of the journeys run that no case took, and per journey (covered, total)."""
        gaps: list[CoverageGap] = []
        totals: dict[str, tuple[int, int]] = {}
        for jid, plan in sorted(self._plans.items()):
            waived = self._unreachable.get(jid, set())
            paths = [p for p in journey_paths(plan) if (p.source, p.trigger) not in waived]
            taken = self._moves.get(jid, set())
            outcomes = self._outcomes.get(jid, set())
            missing = [
                p
                for p in paths
                if (p.source and (p.source, p.trigger) not in taken)
                or (not p.source and p.trigger not in outcomes)
            ]
            gaps.extend(CoverageGap(jid, p.source, p.dest, p.label) for p in missing)
            totals[jid] = (len(paths) - len(missing), len(paths))
        return gaps, totals


@dataclass(frozen=True)
class JourneyPath:
    """A way through a journey: a transition (``source`` step, ``trigger``, ``dest`` state) or, with no
    source, an outcome (``goal``: a conversion; ``exit_when``: leaving by the exit criteria)."""

    source: str
    trigger: str
    dest: str
    label: str


def journey_paths(plan: JourneyPlan) -> list[JourneyPath]:
    """Every transition of the journey's machine except the goal's (any step can convert: the goal is one
    path of its own), then its goal and its ``exit_when`` when it has them."""
    out: list[JourneyPath] = []
    for code, step in enumerate(plan.steps):
        for t, trigger in enumerate(plan.triggers):
            dest = int(plan.table[code, t])
            if trigger == "goal" or dest == NO_STATE:
                continue
            transition = plan.machine.events[trigger].transitions[step.id][0]
            label = str(getattr(transition, "label", trigger))
            out.append(JourneyPath(step.id, trigger, plan.states[dest], label))
    if plan.journey.goal is not None:
        out.append(JourneyPath("", "goal", "converted", f"goal {plan.journey.goal.what} never reached"))
    if plan.exit_when is not None:
        out.append(JourneyPath("", "exit_when", "exited", "exit_when never met"))
    return out


def problem_result(file: str, problems: list[Problem]) -> CaseResult:
    """A test file that could not be read, as one failed result."""
    failures = [TestFailure(p.file, p.line, p.message, p.column) for p in problems]
    return CaseResult(file, "(the file)", problems[0].line if problems else 1, failures)


class _CaseError(InvalidInputError):
    """A case that cannot run: an unknown journey, invalid journeys, a refused event, a failed tick."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


@contextmanager
def _scratch() -> Iterator[Path]:
    """A temporary folder for one case's store: in memory (``/dev/shm``) where the system has one."""
    shm = Path("/dev/shm")
    where = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="orchestrator-test-", dir=where) as folder:
        yield Path(folder)
