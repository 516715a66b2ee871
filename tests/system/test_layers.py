"""Dependencies point one way: the import-linter contracts in ``pyproject.toml`` hold, and a wrong-way
import breaks them (so the check is not vacuous)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The linter's own entry point, run in a child so that the package it analyses is the one under ``cwd``.
LINT = (
    "import sys; from importlinter.cli import lint_imports; "
    "sys.exit(lint_imports(no_cache=True, no_logo=True))"
)


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [sys.executable, "-c", LINT], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_import_contracts_hold() -> None:
    run = _lint(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "5 kept, 0 broken" in run.stdout


def test_a_wrong_way_import_breaks_the_contracts(tmp_path: Path) -> None:
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "orchestrator", tmp_path / "orchestrator", ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    models = tmp_path / "orchestrator" / "language" / "_models.py"
    models.write_text(models.read_text() + "\nimport orchestrator.engine  # the language reaching up\n")
    run = _lint(tmp_path)
    assert run.returncode != 0
    assert "The language knows no store or runtime BROKEN" in run.stdout
    assert "orchestrator.language._models -> orchestrator.engine" in run.stdout
    assert "Layers: the faces on top, the core below them, never importing them BROKEN" in run.stdout
