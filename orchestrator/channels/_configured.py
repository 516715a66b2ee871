"""The channel router a workspace config describes: one adapter per provider its ``channels`` section
sets up, built from the provider's settings.

Every channel whose provider is ``outbox`` shares one ``OutboxAdapter`` writing to the outbox folder (one
per ``layout``, when the channels ask for different ones).
Email (SMTP, and the outbox's ``.eml`` files) comes from the config's ``sender``, with unsubscribe headers
when ``unsubscribe`` is configured. A channel's ``concurrency`` is its provider calls in flight (for SMTP,
its pooled connections), ``rate_limit`` its messages per second across every process of this host sending
through the same provider, ``timeout`` the bound on one call. Files the config names (an FCM service
account, an APNs key) are relative to the config's folder. Secrets are read here, from the environment,
and handed to the adapter that sends them; nothing prints them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.channels._base import Adapter, ChannelRouter
from orchestrator.channels._limits import ProviderLimits
from orchestrator.channels._links import unsubscribe_links
from orchestrator.channels._mail import EmailSettings
from orchestrator.clock import Clock
from orchestrator.config import (
    AnyChannel,
    ApnsChannel,
    FcmChannel,
    HttpSmsChannel,
    HttpWebhookChannel,
    OutboxChannel,
    SmtpChannel,
    TwilioChannel,
    WorkspaceConfig,
)
from orchestrator.errors import SetupError


class ProviderSetupError(SetupError, ValueError):
    """A provider the config describes cannot be set up (the message names its section)."""


def build_router(
    config: WorkspaceConfig, *, outbox: Path, clock: Clock, state_dir: Path | bool | None = True
) -> ChannelRouter:
    """The router for ``config``'s channels; ``outbox`` is the folder of the outbox provider, ``state_dir``
    where rate limits keep their shared state (``True``: the default folder for this user)."""
    channels = config.channels()
    email = _email_settings(config) if "email" in channels else None
    router = ChannelRouter()
    outboxed = [name for name, section in channels.items() if isinstance(section, OutboxChannel)]
    try:
        if outboxed:
            from orchestrator.channels._outbox import OutboxAdapter

            # One adapter per layout the outbox channels ask for, all writing under the same folder.
            layouts: dict[str, list[str]] = {}
            for name in outboxed:
                section = channels[name]
                assert isinstance(section, OutboxChannel)
                layouts.setdefault(section.layout, []).append(name)
            for layout, names in layouts.items():
                router.register(OutboxAdapter(outbox, email=email, layout=layout), names)  # type: ignore[arg-type]
        for name, section in channels.items():
            if not isinstance(section, OutboxChannel):
                router.register(_adapter(name, section, config, email, clock, state_dir), [name])
    except Exception:
        router.close()
        raise
    return router


def _limits(section: AnyChannel) -> ProviderLimits:
    return ProviderLimits(concurrency=section.concurrency, rate_per_s=section.rate_limit)


def _adapter(
    name: str,
    section: AnyChannel,
    config: WorkspaceConfig,
    email: EmailSettings | None,
    clock: Clock,
    state_dir: Path | bool | None,
) -> Adapter:
    where = f"channels.{name}"
    timeout = section.timeout.total_seconds()
    try:
        if isinstance(section, SmtpChannel):
            from orchestrator.channels._smtp import SmtpAdapter, SmtpSettings

            if email is None:
                raise ProviderSetupError(f"{where}: email needs a sender: section with from")
            smtp = SmtpSettings(
                host=section.host,
                port=section.port,
                security=section.security,
                username=section.username,
                password=None if section.password is None else section.password.reveal(),
                timeout_s=timeout,
                limits=_limits(section),
            )
            return SmtpAdapter(smtp, email, state_dir=state_dir)
        if isinstance(section, TwilioChannel):
            from orchestrator.channels._sms import HttpSmsAdapter, TwilioSmsSettings, twilio_url

            twilio = TwilioSmsSettings(
                url=section.url or twilio_url(section.account_sid),
                sender=section.from_,
                account_sid=section.account_sid,
                auth_token=section.auth_token.reveal(),
                timeout_s=timeout,
                limits=_limits(section),
            )
            return HttpSmsAdapter(twilio, state_dir=state_dir)
        if isinstance(section, HttpSmsChannel):
            from orchestrator.channels._sms import JsonSmsAdapter, JsonSmsSettings

            gateway = JsonSmsSettings(
                url=section.url,
                sender=section.from_,
                bearer_token=None if section.token is None else section.token.reveal(),
                id_field=section.id_field,
                timeout_s=timeout,
                limits=_limits(section),
            )
            return JsonSmsAdapter(gateway, state_dir=state_dir)
        if isinstance(section, FcmChannel):
            from orchestrator.channels._fcm import FCM_URL, FcmAdapter, FcmSettings

            fcm = FcmSettings(
                service_account_file=_file(config, section.credentials_file),
                project_id=section.project_id,
                url=section.url or FCM_URL,
                timeout_s=timeout,
                limits=_limits(section),
            )
            return FcmAdapter(fcm, state_dir=state_dir, clock=clock)
        if isinstance(section, ApnsChannel):
            from orchestrator.channels._apns import ApnsAdapter, ApnsSettings

            apns = ApnsSettings(
                team_id=section.team_id,
                key_id=section.key_id,
                topic=section.topic,
                private_key_file=_file(config, section.key_file),
                environment=section.environment,
                url=section.url,
                timeout_s=timeout,
                limits=_limits(section),
            )
            return ApnsAdapter(apns, state_dir=state_dir, clock=clock)
        if isinstance(section, HttpWebhookChannel):
            from orchestrator.channels._webhook import WebhookAdapter, WebhookEndpoint

            endpoints = {
                endpoint: WebhookEndpoint(hook.url, hook.secret.reveal())
                for endpoint, hook in config.file.webhooks.items()
            }
            return WebhookAdapter(
                endpoints, clock=clock, timeout_s=timeout, limits=_limits(section), state_dir=state_dir
            )
    except ProviderSetupError:
        raise
    except (ValueError, LookupError, OSError) as exc:
        # Never the secret: the messages name settings, files and environment variables.
        raise ProviderSetupError(f"{where}: {exc}") from None
    raise ProviderSetupError(f"{where}: provider {section.provider!r} is not known")


def _file(config: WorkspaceConfig, name: str) -> Path:
    return config.root / name


def _email_settings(config: WorkspaceConfig) -> EmailSettings | None:
    sender = config.file.sender
    if sender is None:
        return None
    try:
        unsubscribe = unsubscribe_links(config.file.unsubscribe)
        options: dict[str, Any] = {}
        if sender.message_id_domain:
            options["message_id_domain"] = sender.message_id_domain
        else:
            domain = sender.from_.rsplit("@", 1)[-1].strip(" >")
            if domain and domain != sender.from_:
                options["message_id_domain"] = domain
        return EmailSettings(
            sender=sender.from_,
            reply_to=sender.reply_to,
            envelope_from=sender.envelope_from,
            unsubscribe=unsubscribe,
            **options,
        )
    except (ValueError, LookupError) as exc:
        raise ProviderSetupError(f"sender: {exc}") from None
