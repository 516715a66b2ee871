"""Every error the package defines derives from ``OrchestratorError``, sits where ``orchestrator.errors``
draws it, and maps to an exit code and an HTTP status set there, in one place."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

import orchestrator
from orchestrator import errors
from orchestrator.errors import (
    DeliveryError,
    EngineError,
    Failure,
    InvalidInputError,
    NotFoundError,
    OrchestratorError,
    SetupError,
    StoreError,
    UsageError,
)

PACKAGE = Path(orchestrator.__file__).parent


def _module_names() -> list[str]:
    """Every module of the package, from its files (``pkgutil`` skips folders without ``__init__.py``);
    ``__main__`` modules and Alembic's ``env.py`` run something when imported, and define no error."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__main__" or parts[-2:] == ("migrations", "env"):
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _defined_errors() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for name in _module_names():
        module = importlib.import_module(name)
        for value in vars(module).values():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == name:
                found[f"{name}.{value.__qualname__}"] = value
    return [found[key] for key in sorted(found)]


ERRORS = _defined_errors()
BRANCHES = (UsageError, Failure, InvalidInputError, SetupError, DeliveryError, StoreError, EngineError)


def test_the_walk_finds_the_errors_of_every_layer() -> None:
    names = {e.__name__ for e in ERRORS}
    assert {"SpecError", "ConfigError", "ExpressionError", "TemplateError", "IngestError"} <= names
    assert {"InputError", "SchemaError", "StoreHeld", "StoreUnavailable", "ClockBehind"} <= names
    assert "PreviewError" in names
    assert len(ERRORS) >= 30


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: f"{e.__module__}.{e.__qualname__}")
def test_every_error_derives_from_the_root_and_maps_to_an_exit_code_and_a_status(
    error: type[BaseException],
) -> None:
    assert issubclass(error, OrchestratorError)
    assert error.exit_code in (1, 2)
    assert 400 <= error.http_status < 600
    if error.__module__ != errors.__name__:
        # the mapping is set in orchestrator.errors only: a leaf takes its branch's
        assert not {"exit_code", "http_status"} & set(vars(error))
        assert issubclass(error, BRANCHES)


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.__qualname__)
def test_the_tree_drawn_in_the_docstring_names_every_error(error: type[BaseException]) -> None:
    assert error.__name__ in (errors.__doc__ or "")


def test_errors_module_imports_nothing_from_the_package() -> None:
    source = Path(errors.__file__).read_text()
    assert "from orchestrator" not in source and "import orchestrator" not in source


@pytest.mark.parametrize(
    ("error", "exit_code", "http_status"),
    [
        (OrchestratorError, 1, 500),
        (UsageError, 2, 400),
        (NotFoundError, 2, 404),
        (Failure, 1, 422),
        (InvalidInputError, 1, 400),
        (SetupError, 1, 500),
        (DeliveryError, 1, 502),
        (StoreError, 1, 503),
        (EngineError, 1, 409),
    ],
)
def test_each_branch_maps_to_its_exit_code_and_status(
    error: type[OrchestratorError], exit_code: int, http_status: int
) -> None:
    assert (error.exit_code, error.http_status) == (exit_code, http_status)


def test_leaves_sit_on_their_branch_and_keep_the_built_in_base_their_callers_catch() -> None:
    from orchestrator.channels._base import NoAdapterError
    from orchestrator.channels._configured import ProviderSetupError
    from orchestrator.channels._mail import ComposeError
    from orchestrator.channels.templates import TemplateError
    from orchestrator.channels.templates._errors import LimitError
    from orchestrator.cli._errors import Failure as CliFailure
    from orchestrator.cli._errors import UsageError as CliUsageError
    from orchestrator.config import ConfigError, WorkspaceExists
    from orchestrator.engine._explain import UnknownCustomer
    from orchestrator.engine._preview import PreviewError
    from orchestrator.engine._tick import ClockBehind, VersionConflict
    from orchestrator.http._writer import StoreUnavailable
    from orchestrator.ingest import IngestError
    from orchestrator.language import SpecError
    from orchestrator.measure._experiment import InputError
    from orchestrator.signals._lang import ExpressionError
    from orchestrator.store import SchemaError
    from orchestrator.store._holder import StoreHeld

    assert (CliUsageError, CliFailure) == (UsageError, Failure)  # where the commands import them from
    for leaf, branch, builtin in [
        (SpecError, InvalidInputError, ValueError),
        (ConfigError, InvalidInputError, ValueError),
        (ExpressionError, InvalidInputError, ValueError),
        (IngestError, InvalidInputError, ValueError),
        (TemplateError, InvalidInputError, Exception),
        (ProviderSetupError, SetupError, ValueError),
        (NoAdapterError, SetupError, LookupError),
        (WorkspaceExists, SetupError, FileExistsError),
        (ComposeError, DeliveryError, ValueError),
        (SchemaError, StoreError, Exception),
        (StoreHeld, StoreError, Exception),
        (StoreUnavailable, StoreError, Exception),
        (ClockBehind, EngineError, RuntimeError),
        (VersionConflict, EngineError, RuntimeError),
        (PreviewError, NotFoundError, LookupError),
        (UnknownCustomer, NotFoundError, LookupError),
        (InputError, InvalidInputError, ValueError),
    ]:
        assert issubclass(leaf, branch) and issubclass(leaf, builtin), leaf
    from jinja2.exceptions import SecurityError

    assert issubclass(LimitError, SecurityError)  # the sandbox's own checks catch it as one
    assert str(LimitError("too long")) == "too long"
    assert str(ClockBehind(2_000_000, 3_000_000)).startswith("the clock (")
