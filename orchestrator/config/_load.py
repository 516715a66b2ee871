"""Finding, reading and checking ``orchestrator.yaml``.

``find_config`` looks in the current folder and the folders above it (as git finds its repository), so a
command run anywhere inside a workspace uses that workspace's config. ``load_config`` reads it with the
journey files' YAML rules (``language._yamlio``: no anchors or tags, bounded size) and checks it against the
models of ``_model``; every problem is reported at once as ``file:line:column: message``, an unknown key
with the closest known one. Paths in the file are relative to the file's folder, as is a SQLite store URL,
so the config means the same from any working folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from orchestrator.config._model import (
    CHANNEL_NAMES,
    AnyChannel,
    ConfigFile,
    OutboxChannel,
    secrets_of,
)
from orchestrator.config._secrets import Secret, references
from orchestrator.language import Locations, Problem, SpecError, dotted, load_yaml, read_text, schema_problems

CONFIG_FILE = "orchestrator.yaml"


class ConfigError(SpecError):
    """The workspace config has mistakes; each is a ``Problem`` with file, line and column."""


@dataclass(frozen=True)
class WorkspaceConfig:
    """A loaded config with its paths made absolute (``root``: the folder of the file, or the working
    folder when there is none). ``file`` is the model as written (secrets unrevealed)."""

    file: ConfigFile
    root: Path
    path: Path | None = None
    # ``path: ${NAME}`` of each secret whose environment variable is unset
    unset_secrets: tuple[str, ...] = field(default=())

    def __repr__(self) -> str:  # the store URL may carry a password: never in a repr
        return f"WorkspaceConfig(path={self.path!r}, root={self.root!r})"

    @property
    def store(self) -> str | None:
        """The store URL the file names (None: not named); a relative SQLite path is taken from the
        config's folder."""
        return None if self.file.store is None else _anchor_sqlite(self.file.store, self.root)

    @property
    def journeys(self) -> Path:
        return self.root / self.file.journeys

    @property
    def templates(self) -> Path | None:
        return None if self.file.templates is None else self.root / self.file.templates

    @property
    def outbox(self) -> Path:
        return self.root / self.file.outbox

    @property
    def inbox(self) -> Path | None:
        return None if self.file.inbox is None else self.root / self.file.inbox

    @property
    def tick_seconds(self) -> float:
        return self.file.tick.total_seconds()

    @property
    def global_holdout(self) -> float:
        return self.file.global_holdout

    @property
    def currency(self) -> str | None:
        return self.file.currency

    def snapshot_path(self, store_url: str | None = None) -> Path | None:
        """Where the engine snapshots its signal state on the store ``store_url`` (default: the config's):
        ``snapshot.path`` (relative to the config's folder), else beside a SQLite store's file
        (``<file>.signals``), else nowhere (PostgreSQL, where workers must not share one file, so each
        names its own; SQLite in memory). None when ``snapshot.enabled`` is false."""
        from orchestrator.store import DEFAULT_URL, sqlite_file  # only when an engine is set up

        section = self.file.snapshot
        if not section.enabled:
            return None
        if section.path is not None:
            return self.root / Path(section.path).expanduser()
        file = sqlite_file(store_url or self.store or DEFAULT_URL)  # a relative file: as the store opens it
        return None if file is None else file.with_name(file.name + ".signals")

    @property
    def snapshot_every_seconds(self) -> float:
        return self.file.snapshot.every.total_seconds()

    @property
    def partitions(self) -> int:
        """The partitions workers on a PostgreSQL store split the customers into (0: none)."""
        return self.file.workers.partitions

    @property
    def worker_lease_seconds(self) -> float:
        return self.file.workers.lease.total_seconds()

    def channels(self) -> dict[str, AnyChannel]:
        """Each channel's section. Without a ``channels`` section every channel goes to the outbox."""
        if self.file.channels is None:
            return {name: OutboxChannel(provider="outbox") for name in CHANNEL_NAMES}
        return self.file.channels.configured()

    def delivery_modes(self) -> dict[str, str]:
        return {name: section.delivery for name, section in self.channels().items()}

    def concurrency(self) -> dict[str, int]:
        return {name: section.concurrency for name, section in self.channels().items()}

    @property
    def webhook_endpoints(self) -> frozenset[str]:
        return frozenset(self.file.webhooks)


def find_config(start: Path | None = None) -> Path | None:
    """``orchestrator.yaml`` in ``start`` (default: the working folder) or the nearest folder above."""
    folder = (start or Path.cwd()).resolve()
    for candidate in (folder, *folder.parents):
        path = candidate / CONFIG_FILE
        if path.is_file():
            return path
    return None


def load_config(
    path: Path | str | None = None,
    *,
    start: Path | None = None,
    environ: Mapping[str, str] | None = None,
    require_secrets: bool = False,
) -> WorkspaceConfig:
    """The workspace config: the file at ``path``, else the one ``find_config`` finds from ``start``,
    else the defaults (rooted at ``start`` or the working folder).

    ``environ`` (default ``os.environ``) fills ``${NAME}`` references. With ``require_secrets`` a secret
    whose variable is unset is a problem at its place in the file (commands that send need them; the
    ``config`` command shows them as not set). Raises ``ConfigError`` listing every problem, and
    ``FileNotFoundError`` when an explicit ``path`` does not exist."""
    env = os.environ if environ is None else environ
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"no config file {file}")
    else:
        found = find_config(start)
        if found is None:
            return WorkspaceConfig(ConfigFile(), (start or Path.cwd()).resolve())
        file = found
    try:
        text = read_text(file)
    except SpecError as exc:
        raise ConfigError(exc.problems) from None
    return load_config_text(text, file, environ=env, require_secrets=require_secrets)


def load_config_text(
    text: str, file: Path, *, environ: Mapping[str, str], require_secrets: bool = False
) -> WorkspaceConfig:
    name = str(file)
    try:
        data, locations = load_yaml(text, name)
    except SpecError as exc:
        raise ConfigError(exc.problems) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([Problem(name, 1, 1, "the config is a mapping of store, journeys, channels, ...")])
    problems = _url_passwords(data.get("store"), locations, name)
    try:
        model = ConfigFile.model_validate(data, context={"environ": environ})
    except ValidationError as exc:
        problems += schema_problems(exc, data, locations, name, ConfigFile, "the config")
        raise ConfigError(sorted(problems, key=lambda p: (p.line, p.column))) from None
    unset = [(path, secret) for path, secret in secrets_of(model) if not secret.is_set]
    if require_secrets:
        problems += _unset_problems(unset, model, locations, name)
    if problems:
        raise ConfigError(sorted(problems, key=lambda p: (p.line, p.column)))
    root = file.resolve().parent
    missing = tuple(f"{dotted(path)}: ${{{secret.name}}}" for path, secret in unset)
    return WorkspaceConfig(model, root, file.resolve(), missing)


def _anchor_sqlite(url: str, root: Path) -> str:
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url[len(prefix) :] != ":memory:":
        return prefix + str(root / url[len(prefix) :])
    return url


def _url_passwords(raw: Any, locations: Locations, file: str) -> list[Problem]:
    """A password written into the store URL is a secret in the file: refused (``${NAME}`` is fine)."""
    if not isinstance(raw, str):
        return []
    try:
        password = urlsplit(raw).password
    except ValueError:
        password = None
    if password and not references(password):
        loc = locations.of(("store",))
        return [
            Problem(
                file,
                loc.line,
                loc.column,
                "store: the URL holds a password; name an environment variable instead, e.g. "
                "postgresql+psycopg://app:${PGPASSWORD}@db/orchestrator, "
                "or the whole URL: ${ORCHESTRATOR_DB}",
            )
        ]
    return []


def _unset_problems(
    unset: list[tuple[tuple[str | int, ...], Secret]], model: ConfigFile, locations: Locations, file: str
) -> list[Problem]:
    problems = []
    for path, secret in unset:
        if path[:2] == ("http", "api_keys"):
            continue  # an API key not set: that key is not accepted, the service still runs
        loc = locations.of(path)
        problems.append(
            Problem(
                file,
                loc.line,
                loc.column,
                f"{dotted(path)}: the environment variable {secret.name} is not set",
            )
        )
    return problems


def routes_of(config: WorkspaceConfig) -> tuple[frozenset[str] | None, frozenset[str] | None]:
    """What ``validate`` checks sends against: the channels the config routes (None without a
    ``channels`` section: everything goes to the outbox) and the webhook endpoints it names (None unless
    webhooks go to a real provider)."""
    if config.file.channels is None:
        return None, None
    channels = config.channels()
    webhook = channels.get("webhook")
    endpoints = None if webhook is None or webhook.provider == "outbox" else config.webhook_endpoints
    return frozenset(channels), endpoints


def unsubscribe_missing(config: WorkspaceConfig) -> str | None:
    """The provider of ``channels.email`` when it delivers for real (not the outbox) and the config has no
    ``unsubscribe`` section: marketing email would then go out without ``List-Unsubscribe``, which large
    mailbox providers require of bulk senders. None when that is not the case."""
    email = config.channels().get("email")
    if email is None or email.provider == "outbox" or config.file.unsubscribe is not None:
        return None
    return email.provider
