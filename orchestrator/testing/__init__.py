"""Testing journeys: a simulated clock, the in-memory delivery adapter, a ``World`` harness, a store on
either backend and a pytest plugin, as ``temporalio.testing`` serves Temporal users.

    from orchestrator.testing import T0, World, customer, event

    def test_reminder(world: World) -> None:          # the plugin's fixture: SQLite in tmp_path, clock at T0
        world.write_files({"journeys/cart.yaml": CART, "templates/cart/reminder.txt": "Hi"})
        world.add_customers(customer("ann"))
        world.add_events(event("ann", "add_to_cart", T0))
        world.run_for("1d")
        world.assert_sent("ann", "reminder")

Journey test files (``*.test.yaml`` beside the journeys, see ``_test_files``) are run by
``run_journey_tests(paths)`` (``_runner``; ``orchestrator test`` calls it) and collected by the plugin.

The pytest plugin (``orchestrator.testing.pytest_plugin``) is registered by installing the package; see
its docstring for the fixtures and for running a test on both store backends.
"""

from orchestrator.channels import MemoryAdapter
from orchestrator.testing._runner import (
    CaseResult,
    CoverageGap,
    JourneyTestRunner,
    TestFailure,
    TestRunReport,
    find_test_files,
    run_journey_tests,
)
from orchestrator.testing._test_files import TestCase, TestFile, read_test_file
from orchestrator.testing.clock import T0, SimClock, at, duration
from orchestrator.testing.factories import CONSENTED, customer, event, phone_for, write_files
from orchestrator.testing.postgres import PostgresServer, postgres_bin
from orchestrator.testing.world import Instance, World

__all__ = [
    "CONSENTED",
    "T0",
    "CaseResult",
    "CoverageGap",
    "Instance",
    "JourneyTestRunner",
    "MemoryAdapter",
    "PostgresServer",
    "SimClock",
    "TestCase",
    "TestFailure",
    "TestFile",
    "TestRunReport",
    "World",
    "at",
    "customer",
    "duration",
    "event",
    "find_test_files",
    "phone_for",
    "postgres_bin",
    "read_test_file",
    "run_journey_tests",
    "write_files",
]
