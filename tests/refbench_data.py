"""The shared reference benchmark (``../shared/bench/refbench.py``, beside the project) loaded as a module for
the tests that compare the engine with its own numpy kernel; a test skips when the folder is absent."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

REFBENCH_PATH = Path(__file__).resolve().parents[2] / "shared" / "bench" / "refbench.py"


def load_refbench() -> ModuleType:
    """The refbench module (``generate``, ``evaluate``, ``write``, ``TYPES``, ``NOW``), or skip the calling
    test when the shared benchmark folder is not there."""
    if not REFBENCH_PATH.exists():
        pytest.skip(f"{REFBENCH_PATH} not found (the shared benchmark folder sits beside the project)")
    spec = importlib.util.spec_from_file_location("refbench", REFBENCH_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
