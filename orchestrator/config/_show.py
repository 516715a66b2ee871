"""The effective config as YAML, for ``orchestrator config``: every setting with its value after defaults,
``${NAME}`` references and command-line flags, and no secret in it (a secret shows its variable and
whether it is set; a password in a URL shows as ``***``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import BaseModel

from orchestrator.config._load import WorkspaceConfig
from orchestrator.config._secrets import Secret
from orchestrator.durations import format_duration


def mask_url(url: str) -> str:
    """``url`` with the password of its user part replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def effective(config: WorkspaceConfig, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The effective settings as plain data (see the module docstring). ``overrides`` are the values the
    command line gave (``store``, ``journeys``, ...), which win over the file."""
    data = _plain(config.file)
    data["store"] = config.store
    data["journeys"] = str(config.journeys)
    data["templates"] = None if config.templates is None else str(config.templates)
    data["outbox"] = str(config.outbox)
    data["inbox"] = None if config.inbox is None else str(config.inbox)
    data["channels"] = {name: _plain(section) for name, section in config.channels().items()}
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = str(value) if isinstance(value, Path) else value
    # Where the snapshot goes on that store (none: not kept), read before the store URL is masked.
    snapshot = config.snapshot_path(data["store"] if isinstance(data.get("store"), str) else None)
    data["snapshot"]["path"] = None if snapshot is None else str(snapshot)
    if isinstance(data.get("store"), str):
        data["store"] = mask_url(data["store"])
    return {"config": str(config.path) if config.path else None, **data}


def effective_yaml(config: WorkspaceConfig, overrides: Mapping[str, Any] | None = None) -> str:
    return yaml.safe_dump(effective(config, overrides), sort_keys=False, allow_unicode=True, width=100)


def _plain(value: Any) -> Any:
    if isinstance(value, Secret):
        return value.shown()
    if isinstance(value, BaseModel):
        return {
            (info.alias or name): _plain(getattr(value, name))
            for name, info in type(value).model_fields.items()
        }
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, Path):
        return str(value)
    return value
