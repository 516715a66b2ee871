"""Where each setting of a command comes from, decided in one place.

A setting is taken from its flag when the flag is given, else from the workspace config, else from the
environment variable that set it before there was a config (``ORCHESTRATOR_DB``,
``ORCHESTRATOR_GLOBAL_HOLDOUT``, ``ORCHESTRATOR_DELIVERY``), else from its default. Every flag defaults to
None, so "not given" is told apart from a value that happens to equal the default.

The workspace config is ``orchestrator.yaml`` (``--config PATH``, else the file in the current folder or
the nearest folder above it); ``load_workspace_config`` turns it into settings by name. Paths in it are
relative to its own folder.

Nothing here imports the core at module level: the command line must start quickly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from orchestrator.cli._errors import Failure, UsageError

if TYPE_CHECKING:
    from orchestrator.channels import DeliveryMode
    from orchestrator.config import WorkspaceConfig

T = TypeVar("T")

#: The parsed arguments of one command: its options (resolved through ``Settings``) as attributes.
Args = SimpleNamespace

DEFAULT_JOURNEYS = "journeys"
DEFAULT_OUTBOX = "outbox"
DEFAULT_INTERVAL = 60.0
DEFAULT_WATCH = 1.0
DEFAULT_LOG_FORMAT = "text"
DEFAULT_LOG_LEVEL = "info"

ENV_DB = "ORCHESTRATOR_DB"
ENV_GLOBAL_HOLDOUT = "ORCHESTRATOR_GLOBAL_HOLDOUT"
ENV_DELIVERY = "ORCHESTRATOR_DELIVERY"


def load_workspace_config(path: Path | None) -> Mapping[str, Any]:
    """The settings ``orchestrator.yaml`` gives, by setting name (``db``, ``journeys``, ``templates``,
    ``outbox``, ``inbox``, ``global_holdout``, ``currency``, ``delivery``, ``interval``, ``log_format``,
    ``log_level``): only those the file writes out, so a setting it leaves alone still comes from the
    environment or the default. ``path`` is ``--config`` (None: ``orchestrator.yaml`` here or in the
    nearest folder above; no file, no settings)."""
    config = read_config(path)
    if config.path is None:
        return {}
    given = config.file.model_fields_set
    out: dict[str, Any] = {}
    if "store" in given:
        out["db"] = config.store
    for name in ("journeys", "outbox"):
        out[name] = getattr(config, name)  # always: relative to the file, not to the working folder
    if "templates" in given:
        out["templates"] = config.templates
    if "inbox" in given:
        out["inbox"] = config.inbox
    if "global_holdout" in given:
        out["global_holdout"] = config.global_holdout
    if "currency" in given:
        out["currency"] = config.currency
    if "tick" in given:
        out["interval"] = config.tick_seconds
    if config.file.channels is not None:
        out["delivery"] = config.delivery_modes()
    if "log" in given:
        log_given = config.file.log.model_fields_set
        if "format" in log_given:
            out["log_format"] = config.file.log.format
        if "level" in log_given:
            out["log_level"] = config.file.log.level
    return out


def read_config(path: Path | None, *, require_secrets: bool = False) -> WorkspaceConfig:
    """The workspace config (``--config`` or the one found from here), its mistakes as one ``Failure``
    listing each at ``file:line:column``."""
    from orchestrator.config import ConfigError, load_config

    try:
        return load_config(path, require_secrets=require_secrets)
    except ConfigError as exc:
        raise Failure(f"the workspace config is not valid:\n{exc}") from None
    except FileNotFoundError as exc:
        raise UsageError(f"--config: {exc}") from None


@dataclass(frozen=True)
class Resolved(Generic[T]):
    """A setting's value and where it came from: the flag (``--db``), ``config``, the environment
    variable (``ORCHESTRATOR_DB``) or ``default``; error messages name the source."""

    value: T
    source: str


class Settings:
    """The sources of one command line's settings: ``--config``, the config it names and the environment.

    Each method takes the flag's value (None when not given) and returns the setting's value."""

    def __init__(self, config_path: Path | None = None, environ: Mapping[str, str] | None = None) -> None:
        self.config_path = config_path
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self._config: Mapping[str, Any] | None = None

    @property
    def config(self) -> Mapping[str, Any]:
        """The workspace config's settings, read once, when a command first needs one."""
        if self._config is None:
            self._config = load_workspace_config(self.config_path)
        return self._config

    def workspace_config(self, *, require_secrets: bool = False) -> WorkspaceConfig:
        """The whole workspace config (providers, webhooks, links...). With ``require_secrets`` (the
        commands that send), a secret whose environment variable is unset is a problem at its line."""
        return read_config(self.config_path, require_secrets=require_secrets)

    def _pick(self, name: str, flag: T | None, option: str, env: str | None = None) -> Resolved[Any] | None:
        """The first of flag, config and environment that holds the setting; None when none does."""
        if flag is not None:
            return Resolved(flag, option)
        if self.config.get(name) is not None:
            return Resolved(self.config[name], "config")
        if env is not None:
            text = self.environ.get(env, "").strip()
            if text:
                return Resolved(text, env)
        return None

    # ------------------------------------------------------------------------------------------ store

    def db(self, flag: str | None) -> str:
        """The store URL: ``--db``, config, ``$ORCHESTRATOR_DB``, else ``sqlite:///orchestrator.db`` here."""
        picked = self._pick("db", flag, "--db", ENV_DB)
        if picked is not None:
            return str(picked.value)
        from orchestrator.store import DEFAULT_URL

        return DEFAULT_URL

    # ------------------------------------------------------------------------------------------ workspace

    def journeys(self, flag: Sequence[str] | None) -> list[str]:
        """Journey files or folders: ``--journeys``, config, else ``journeys/``."""
        picked = self._pick("journeys", flag, "--journeys")
        if picked is None:
            return [DEFAULT_JOURNEYS]
        value = picked.value
        return [str(value)] if isinstance(value, (str, os.PathLike)) else [str(v) for v in value]

    def templates(self, flag: Path | None) -> Path | None:
        """The templates folder: ``--templates``, config, else None (the nearest ``templates/`` above each
        journey)."""
        picked = self._pick("templates", flag, "--templates")
        return None if picked is None else Path(picked.value)

    def outbox(self, flag: Path | None) -> Path:
        """The folder the outbox adapter writes to: ``--outbox``, config, else ``outbox/``."""
        picked = self._pick("outbox", flag, "--outbox")
        return Path(DEFAULT_OUTBOX) if picked is None else Path(picked.value)

    def inbox(self, flag: Path | None) -> Path | None:
        """The daemon's inbox folder: ``--inbox``, config, else None (no inbox)."""
        picked = self._pick("inbox", flag, "--inbox")
        return None if picked is None else Path(picked.value)

    # ------------------------------------------------------------------------------------------ engine

    def global_holdout(self, flag: float | None) -> float:
        """Percent of all customers no journey messages: ``--global-holdout``, config,
        ``$ORCHESTRATOR_GLOBAL_HOLDOUT``, else 0. ``UsageError`` outside 0..100 or not a number."""
        picked = self._pick("global_holdout", flag, "--global-holdout", ENV_GLOBAL_HOLDOUT)
        if picked is None:
            return 0.0
        value = picked.value
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise UsageError(f"{picked.source}={picked.value!r} is not a percent") from None
        if not 0.0 <= value <= 100.0:
            raise UsageError(f"the global holdout is a percent between 0 and 100, not {value:g}")
        return float(value)

    def currency(self, flag: str | None) -> str | None:
        """The ISO 4217 code the reports write money in: ``--currency``, config, else None (plain
        numbers). ``UsageError`` for a code that is not one."""
        picked = self._pick("currency", flag, "--currency")
        if picked is None:
            return None
        from orchestrator.money import check_currency

        try:
            return check_currency(str(picked.value))
        except ValueError as exc:
            raise UsageError(f"{picked.source}: {exc}") from None

    def delivery(self, flag: Sequence[str] | None) -> dict[str, DeliveryMode]:
        """Delivery mode per channel: ``--delivery CHANNEL=MODE`` (repeatable), config,
        ``$ORCHESTRATOR_DELIVERY``; channels not named are at_least_once. ``UsageError`` naming the source
        for an unknown channel or mode."""
        from orchestrator.channels import parse_delivery_modes

        picked = self._pick("delivery", flag, "--delivery", ENV_DELIVERY)
        if picked is None:
            return {}
        value = picked.value
        if isinstance(value, Mapping):
            specs = [f"{channel}={mode}" for channel, mode in value.items()]
        else:
            specs = [value] if isinstance(value, str) else [str(v) for v in value]
        try:
            return parse_delivery_modes(specs)
        except ValueError as exc:
            raise UsageError(f"{picked.source}: {exc}") from None

    def delivery_source(self, flag: Sequence[str] | None) -> str | None:
        """Where the delivery modes come from: ``--delivery``, ``config``, ``ORCHESTRATOR_DELIVERY`` or
        None (the default). A daemon takes the modes of a reloaded config only when they came from it."""
        picked = self._pick("delivery", flag, "--delivery", ENV_DELIVERY)
        return None if picked is None else picked.source

    def interval(self, flag: float | None) -> float:
        """Seconds between the daemon's ticks: ``--interval``, config, else 60. ``UsageError`` unless
        positive."""
        picked = self._pick("interval", flag, "--interval")
        value = DEFAULT_INTERVAL if picked is None else float(picked.value)
        if value <= 0:
            raise UsageError("--interval must be positive")
        return value

    def watch(self, flag: float | None) -> float:
        """How often the daemon looks for changed workspace files (seconds; 0: only on SIGHUP):
        ``--watch``, config, else 1. ``UsageError`` when negative."""
        picked = self._pick("watch", flag, "--watch")
        value = DEFAULT_WATCH if picked is None else float(picked.value)
        if value < 0:
            raise UsageError("--watch must be 0 (only on SIGHUP) or positive")
        return value

    def log_format(self, flag: str | None) -> str:
        """The daemon's log lines, ``text`` or ``json``: ``--log-format``, config, else text."""
        picked = self._pick("log_format", flag, "--log-format")
        return DEFAULT_LOG_FORMAT if picked is None else str(picked.value)

    def log_level(self, flag: str | None) -> str:
        """The daemon's log level (debug, info, warning, error): ``--log-level``, config, else info."""
        picked = self._pick("log_level", flag, "--log-level")
        return DEFAULT_LOG_LEVEL if picked is None else str(picked.value).lower()


def check_config_path(path: Path | None) -> None:
    """``--config PATH`` must name a file (``UsageError`` otherwise)."""
    if path is None:
        return
    if not path.exists():
        raise UsageError(f"--config {path}: no such file")
    if not path.is_file():
        raise UsageError(f"--config {path}: not a file")
