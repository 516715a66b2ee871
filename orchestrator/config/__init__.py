"""The workspace config, ``orchestrator.yaml``: find it, read it, check it, show it, scaffold it.

    config = load_config()                # ./orchestrator.yaml or the nearest one above; defaults if none
    config.store, config.journeys, config.channels(), config.file.log.format
    print(effective_yaml(config))          # what is in effect, secrets masked

See ``_model`` for the file's sections and ``_secrets`` for ``${NAME}`` references.
"""

from orchestrator.config._load import (
    CONFIG_FILE,
    ConfigError,
    WorkspaceConfig,
    find_config,
    load_config,
    routes_of,
    unsubscribe_missing,
)
from orchestrator.config._model import (
    CHANNEL_NAMES,
    AnyChannel,
    ApiKey,
    ApnsChannel,
    ConfigFile,
    Console,
    FcmChannel,
    HttpSmsChannel,
    HttpWebhookChannel,
    OutboxChannel,
    Sender,
    SmtpChannel,
    TwilioChannel,
    Unsubscribe,
    Webhook,
)
from orchestrator.config._scaffold import WorkspaceExists, init_workspace
from orchestrator.config._secrets import Secret
from orchestrator.config._show import effective, effective_yaml, mask_url

__all__ = [
    "CHANNEL_NAMES",
    "CONFIG_FILE",
    "AnyChannel",
    "ApiKey",
    "ApnsChannel",
    "ConfigError",
    "ConfigFile",
    "Console",
    "FcmChannel",
    "HttpSmsChannel",
    "HttpWebhookChannel",
    "OutboxChannel",
    "Secret",
    "Sender",
    "SmtpChannel",
    "TwilioChannel",
    "Unsubscribe",
    "Webhook",
    "WorkspaceConfig",
    "WorkspaceExists",
    "effective",
    "effective_yaml",
    "find_config",
    "init_workspace",
    "load_config",
    "mask_url",
    "routes_of",
    "unsubscribe_missing",
]
