"""The pytest plugin of ``orchestrator.testing``, registered as ``orchestrator`` through the ``pytest11``
entry point: installing the package gives every test these fixtures.

- ``clock``: a ``SimClock`` at ``T0``.
- ``backend``: ``"sqlite"`` or ``"postgres"``, the store backend of this run of the test.
- ``store_url``: a fresh, empty store of that backend (a SQLite file in ``tmp_path``, or a new database);
  ``make_store_url(name)`` makes another one at each call.
- ``store``: that store, opened, disposed at teardown.
- ``world``: a ``World`` in ``tmp_path`` on that store and the ``clock``, closed at teardown.
- ``postgres_server`` / ``postgres_url``: the session's private PostgreSQL server and a new database on it.

Backends. A test that uses the store (through ``backend``, ``store_url``, ``store`` or ``world``) runs on
the backend ``--backend`` names (default ``sqlite``), or once on each backend its ``backends`` marker
names:

    pytestmark = pytest.mark.backends("sqlite", "postgres")   # every test of the module, on both

A run on PostgreSQL carries the ``postgres`` marker (select with ``-m postgres``, skip with
``-m "not postgres"``) and starts a private server once per session (``orchestrator.testing.postgres``).
Without PostgreSQL binaries those runs are skipped, except when the ``CI`` environment variable is set,
where they fail: CI must run them.

Journey test files. Every ``*.test.yaml`` (or ``*.test.yml``) file pytest collects is a set of tests, one
per test case, named by the case's ``name`` (``pytest journeys/`` runs them; ``pytest
journeys/cart.test.yaml::"bought it"`` one case). A case fails with the same lines ``orchestrator test``
prints (``file:line: customer: expected ...; found: ...``); a file that cannot be read is one failing test
listing its problems. Journeys are looked for beside each test file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from orchestrator.errors import Failure

if TYPE_CHECKING:  # imported where used: loading the plugin stays cheap for every pytest run
    from orchestrator.store import Store
    from orchestrator.testing._runner import JourneyTestRunner
    from orchestrator.testing.clock import SimClock
    from orchestrator.testing.postgres import PostgresServer
    from orchestrator.testing.world import World

BACKENDS = ("sqlite", "postgres")
_RUNNER: pytest.StashKey[JourneyTestRunner] = pytest.StashKey()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("orchestrator", "orchestrator.testing")
    group.addoption(
        "--backend",
        choices=BACKENDS,
        default="sqlite",
        help="store backend of tests without a 'backends' marker (default: sqlite)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "backends(*names): run the test once on each named store backend (sqlite, postgres)"
    )
    config.addinivalue_line(
        "markers",
        "postgres: needs PostgreSQL binaries (a private server is started); required when CI is set",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("backends")
    if marker is None or "backend" not in metafunc.fixturenames:
        return
    unknown = set(marker.args) - set(BACKENDS)
    if unknown or not marker.args:
        raise pytest.UsageError(f"backends marker: name one or more of {BACKENDS}, not {marker.args}")
    metafunc.parametrize(
        "backend",
        [
            pytest.param(name, marks=[pytest.mark.postgres] if name == "postgres" else [])
            for name in marker.args
        ],
        indirect=True,
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``--backend postgres``, the runs of unmarked tests on the store are PostgreSQL runs too."""
    if config.getoption("--backend") != "postgres":
        return
    for item in items:
        callspec = getattr(item, "callspec", None)
        chosen = callspec is not None and "backend" in callspec.params
        if "backend" in getattr(item, "fixturenames", ()) and not chosen:
            item.add_marker(pytest.mark.postgres)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Collect journey test files (``*.test.yaml``): one test per case."""
    if file_path.name.endswith((".test.yaml", ".test.yml")):
        collected: pytest.Collector = JourneyTestFile.from_parent(parent, path=file_path)
        return collected
    return None


class JourneyTestFailed(Failure):
    """A journey test case whose expectations were not met: the lines to show."""


class JourneyTestFile(pytest.File):
    """A ``*.test.yaml`` file: its cases, run by the session's ``JourneyTestRunner``."""

    def collect(self) -> Iterator[pytest.Item]:
        test_file = _journey_runner(self.config).read(self.path)
        if test_file.problems:
            lines = [str(p) for p in test_file.problems]
            yield JourneyTestItem.from_parent(self, name="(the file)", case=None, problems=lines)
            return
        for case in test_file.cases:
            yield JourneyTestItem.from_parent(self, name=case.name, case=case, problems=[])


class JourneyTestItem(pytest.Item):
    """One case of a journey test file."""

    def __init__(self, *, case: Any, problems: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.problems = problems

    def runtest(self) -> None:
        if self.case is None:
            raise JourneyTestFailed("\n".join(self.problems))
        result = _journey_runner(self.config).run_case(self.case, self.path)
        if result.failures:
            raise JourneyTestFailed("\n".join(str(f) for f in result.failures))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, JourneyTestFailed):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        line = self.case.line if self.case is not None else 1
        return self.path, line - 1, f"journey test: {self.name}"


def _journey_runner(config: pytest.Config) -> JourneyTestRunner:
    """The session's runner (it keeps the journeys it loaded for the next cases)."""
    from orchestrator.testing._runner import JourneyTestRunner

    runner: JourneyTestRunner | None = config.stash.get(_RUNNER, None)
    if runner is None:
        runner = JourneyTestRunner()
        config.stash[_RUNNER] = runner
    return runner


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the session (socket only, as ``nobody`` under root), stopped by pid."""
    from orchestrator.testing.postgres import PostgresServer, postgres_bin

    bin_dir = postgres_bin()
    if bin_dir is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the PostgreSQL tests, but initdb/pg_ctl were not found")
        pytest.skip("PostgreSQL binaries not installed")
    server = PostgresServer.start(bin_dir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a fresh, empty database on the session's PostgreSQL server."""
    return postgres_server.new_database()


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """``sqlite`` or ``postgres``: the store backend of this run of the test."""
    name: str = getattr(request, "param", None) or request.config.getoption("--backend")
    return name


@pytest.fixture
def make_store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Make a fresh, empty store of the run's backend at each call: ``make_store_url("two")`` is
    ``tmp_path/two.db`` on SQLite, a new database on PostgreSQL. For tests that need more than one store."""
    from orchestrator.store import sqlite_url

    def make(name: str) -> str:
        if backend == "postgres":
            server: PostgresServer = request.getfixturevalue("postgres_server")
            return server.new_database()
        return sqlite_url(tmp_path / f"{name}.db")

    return make


@pytest.fixture
def store_url(make_store_url: Callable[[str], str]) -> str:
    """A fresh, empty store of the run's backend: ``tmp_path/world.db``, or a new PostgreSQL database."""
    return make_store_url("world")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """The run's store, opened (schema created), disposed at teardown."""
    from orchestrator.store import open_store

    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.dispose()


@pytest.fixture
def clock() -> SimClock:
    """A simulated clock at ``T0``; it moves only when told (``clock.advance("2h")``)."""
    from orchestrator.testing.clock import SimClock

    return SimClock()


@pytest.fixture
def world(tmp_path: Path, store_url: str, clock: SimClock) -> Iterator[World]:
    """A ``World`` in ``tmp_path`` (journeys in ``tmp_path/journeys``) on the run's store and ``clock``."""
    from orchestrator.testing.world import World

    with World(tmp_path, store=store_url, clock=clock) as made:
        yield made
