"""Shared set-up of the project's tests. The fixtures (``store``, ``world``, ``clock``, ``backend``,
``postgres_url``...) come from the ``orchestrator.testing`` pytest plugin, registered by installing the
package; modules marked ``pytest.mark.backends("sqlite", "postgres")`` run each test on both backends.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

# A checkout whose installed metadata predates the plugin's entry point still gets its fixtures.
if not any(ep.name == "orchestrator" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["orchestrator.testing.pytest_plugin"]


@pytest.fixture(autouse=True)
def _on_a_backend(backend: str) -> str:
    """Every test asks for the backend, so a module marked for both backends runs each of its tests on
    each (invariant 8: one suite, two backends), whether or not the test opens a store."""
    return backend
