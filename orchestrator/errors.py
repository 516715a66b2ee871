"""The package's errors: one root, ``OrchestratorError``, and a branch for each thing the user must do.

Catch ``OrchestratorError`` to catch every error the package raises on purpose; catch a branch to handle
one kind. Each branch carries what it means to the faces: ``exit_code`` (the command line's exit code)
and ``http_status`` (the HTTP service's status), here and nowhere else.

    OrchestratorError                   exit 1  HTTP 500
    ├── UsageError                      exit 2  HTTP 400  change how it is called (arguments, names)
    │   └── NotFoundError               exit 2  HTTP 404  a journey, step or customer asked for is not there
    │       ├── PreviewError                              engine._preview
    │       ├── UnknownCustomer                           engine._explain
    │       ├── UnknownJourney                            engine._audience
    │       └── JourneyNotRun                             engine._overview
    ├── Failure                         exit 1  HTTP 422  the command ran and found problems
    │   └── JourneyTestFailed                             testing.pytest_plugin (a journey test case)
    ├── InvalidInputError               exit 1  HTTP 400  fix the file or the value given
    │   ├── SpecError                                     language._yamlio (a journey, policy, plan file)
    │   │   └── ConfigError                               config (the workspace config)
    │   ├── ExpressionError                               signals._syntax
    │   ├── TemplateError                                 channels.templates
    │   ├── LimitError                                    channels.templates (internal: a bound was hit)
    │   ├── IngestError                                   ingest (a whole input file)
    │   ├── InputError                                    measure._experiment (an experiment table)
    │   ├── NotEnoughHistory                              predict._fit (too little to fit the models on)
    │   ├── _CaseError                                    testing._runner (internal: a test case cannot run)
    │   ├── _Refused                                      language._yamlio (internal)
    │   ├── _Unusable                                     engine._state_snapshot (internal: not used)
    │   └── _NotPlain                                     channels.templates._context (internal)
    ├── SetupError                      exit 1  HTTP 500  fix the set-up: the config's providers, the folder
    │   ├── ProviderSetupError                            channels._configured
    │   ├── PredictSetupError                             predict._fit (the extra is not installed)
    │   ├── NoFitKept                                     predict._scores (no fit to score with)
    │   ├── UpliftSetupError                              measure._uplift (the extra is not installed)
    │   ├── NoAdapterError                                channels._base
    │   └── WorkspaceExists                               config (``init`` would overwrite files)
    ├── DeliveryError                   exit 1  HTTP 502  a message cannot be delivered as it is
    │   ├── ComposeError                                  channels._mail
    │   ├── InvalidNumber, SmsRefused                     channels._sms
    │   ├── PushRefused                                   channels._push
    │   ├── _Undeliverable                                channels._outbox (internal)
    │   └── _Refused, _GoneBeforeData                     channels._smtp (internal)
    ├── StoreError                      exit 1  HTTP 503  the store cannot be used now: wait, free, upgrade it
    │   ├── SchemaError                                   store._schema
    │   ├── StoreHeld                                     store._holder
    │   ├── PartitionCountError                           store._partitions
    │   └── StoreUnavailable                              http._writer
    └── EngineError                     exit 1  HTTP 409  the engine refuses to go on until this is fixed
        ├── ClockBehind                                   engine._tick
        ├── MissingFit                                    engine._tick (a prediction without its fit)
        └── VersionConflict                               engine._tick

``UsageError``, ``NotFoundError`` and ``Failure`` are defined here; each other leaf is defined in the
module named, derives from its branch, and keeps the built-in base its callers catch (``SpecError`` is
still a ``ValueError``, ``NoAdapterError`` a ``LookupError``, ``ClockBehind`` a ``RuntimeError``,
``WorkspaceExists`` a ``FileExistsError``, ``LimitError`` Jinja's ``SecurityError``). Leaves never set
``exit_code`` or ``http_status`` (a test checks it). This module imports nothing from the package, so
every layer may import it.
"""

from __future__ import annotations

from typing import ClassVar

#: What to do about a full disk, in every message that reports one (the store's and the command line's).
DISK_FULL_REMEDY = "free some space (or raise the quota or size limit) and run again"

__all__ = [
    "DISK_FULL_REMEDY",
    "DeliveryError",
    "EngineError",
    "Failure",
    "InvalidInputError",
    "NotFoundError",
    "OrchestratorError",
    "SetupError",
    "StoreError",
    "UsageError",
]


class OrchestratorError(Exception):
    """Any error the package raises on purpose; its message says what happened and what to do."""

    exit_code: ClassVar[int] = 1
    """The command line's exit code when this error ends a command."""
    http_status: ClassVar[int] = 500
    """The HTTP status when this error ends a request."""


class UsageError(OrchestratorError):
    """Bad arguments: the call must change (exit 2)."""

    exit_code = 2
    http_status = 400


class NotFoundError(UsageError):
    """A journey, step or customer asked for by name is not there (the message names it)."""

    http_status = 404


class Failure(OrchestratorError):
    """The command ran and found problems (exit 1)."""

    http_status = 422


class InvalidInputError(OrchestratorError):
    """A file or value given is not valid: a journey, policy, config, expression, template or data file."""

    http_status = 400


class SetupError(OrchestratorError):
    """The workspace's set-up does not allow this: a provider that cannot be built, a channel without
    one, a folder that already holds a workspace."""


class DeliveryError(OrchestratorError):
    """A message cannot be delivered as it is (the address, the body, the provider's refusal)."""

    http_status = 502


class StoreError(OrchestratorError):
    """The store cannot be used now: held by another engine, unavailable, or of another schema."""

    http_status = 503


class EngineError(OrchestratorError):
    """The engine refuses to go on until this is fixed (the clock went back, a journey changed meaning)."""

    http_status = 409
