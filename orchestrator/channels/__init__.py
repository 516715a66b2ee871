"""Channels: sandboxed message templates and delivery adapters behind one protocol.

``base`` holds the protocol and message types, ``templates`` the sandboxed renderer, ``delivery`` the
classification of provider answers and the backoff schedule, ``transport`` the pooled HTTP client (httpx)
with its deadline and size bounds, ``limits`` the concurrency and the cross-process rate limit of each
provider, ``lanes`` the provider calls in flight per channel. Adapters: ``outbox`` (files), ``memory`` (the
in-memory twin used by tests), ``smtp`` (email over pooled connections, composed by ``mail``), ``sms`` (a
Twilio-style form POST and a generic JSON gateway), ``push`` (a generic FCM/APNs-shaped HTTP endpoint),
``fcm`` (FCM HTTP v1 with service-account tokens), ``apns`` (APNs over HTTP/2 with JWT provider tokens)
and ``webhook`` (signed JSON to named endpoints). ``signing`` makes the tokens of the links messages
carry, ``links`` those links (unsubscribe, tracked clicks, the open pixel).

Each provider is configured by a frozen settings object (``SmtpSettings``, ``TwilioSmsSettings``,
``JsonSmsSettings``, ``FcmSettings``, ``ApnsSettings``, ``WebhookEndpoint``; secrets never in ``repr``)
with a ``ProviderLimits``; its adapter is built from it and released by ``close()``.

The names below are imported when first used (PEP 562), so ``import orchestrator.channels.base`` does not
load every provider's libraries (httpx, google-auth, PyJWT): the command line starts faster.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.channels.apns import ApnsAdapter, ApnsSettings
    from orchestrator.channels.base import (
        CHANNELS,
        Adapter,
        ChannelRouter,
        DeliveryOutcome,
        DeliveryResult,
        DeliveryStatus,
        NoAdapterError,
        OutgoingMessage,
    )
    from orchestrator.channels.configured import ProviderSetupError, build_router
    from orchestrator.channels.delivery import AT_MOST_ONCE, Backoff, DeliveryMode, parse_delivery_modes
    from orchestrator.channels.fcm import FcmAdapter, FcmSettings
    from orchestrator.channels.lanes import ChannelLanes
    from orchestrator.channels.limits import ProviderLimits, RateLimiter
    from orchestrator.channels.links import MessageLinks, TrackingLinks, message_links
    from orchestrator.channels.mail import EmailSettings, UnsubscribeLinks
    from orchestrator.channels.memory import MemoryAdapter
    from orchestrator.channels.outbox import OutboxAdapter
    from orchestrator.channels.push import HttpPushAdapter, PushRules
    from orchestrator.channels.signing import Keyring
    from orchestrator.channels.sms import (
        HttpSmsAdapter,
        JsonSmsAdapter,
        JsonSmsSettings,
        SmsRules,
        TwilioSmsSettings,
        count_segments,
    )
    from orchestrator.channels.smtp import SmtpAdapter, SmtpSettings
    from orchestrator.channels.templates import PreparedContext, TemplateError, TemplateRenderer
    from orchestrator.channels.webhook import WebhookAdapter, WebhookEndpoint

_EXPORTS: dict[str, str] = {
    "AT_MOST_ONCE": "orchestrator.channels.delivery",
    "CHANNELS": "orchestrator.channels.base",
    "Adapter": "orchestrator.channels.base",
    "ApnsAdapter": "orchestrator.channels.apns",
    "ApnsSettings": "orchestrator.channels.apns",
    "Backoff": "orchestrator.channels.delivery",
    "ChannelLanes": "orchestrator.channels.lanes",
    "ChannelRouter": "orchestrator.channels.base",
    "DeliveryMode": "orchestrator.channels.delivery",
    "DeliveryOutcome": "orchestrator.channels.base",
    "DeliveryResult": "orchestrator.channels.base",
    "DeliveryStatus": "orchestrator.channels.base",
    "EmailSettings": "orchestrator.channels.mail",
    "FcmAdapter": "orchestrator.channels.fcm",
    "FcmSettings": "orchestrator.channels.fcm",
    "HttpPushAdapter": "orchestrator.channels.push",
    "HttpSmsAdapter": "orchestrator.channels.sms",
    "JsonSmsAdapter": "orchestrator.channels.sms",
    "JsonSmsSettings": "orchestrator.channels.sms",
    "Keyring": "orchestrator.channels.signing",
    "MessageLinks": "orchestrator.channels.links",
    "MemoryAdapter": "orchestrator.channels.memory",
    "NoAdapterError": "orchestrator.channels.base",
    "OutboxAdapter": "orchestrator.channels.outbox",
    "OutgoingMessage": "orchestrator.channels.base",
    "ProviderLimits": "orchestrator.channels.limits",
    "PreparedContext": "orchestrator.channels.templates",
    "ProviderSetupError": "orchestrator.channels.configured",
    "PushRules": "orchestrator.channels.push",
    "RateLimiter": "orchestrator.channels.limits",
    "SmsRules": "orchestrator.channels.sms",
    "SmtpAdapter": "orchestrator.channels.smtp",
    "SmtpSettings": "orchestrator.channels.smtp",
    "TemplateError": "orchestrator.channels.templates",
    "TemplateRenderer": "orchestrator.channels.templates",
    "TrackingLinks": "orchestrator.channels.links",
    "TwilioSmsSettings": "orchestrator.channels.sms",
    "UnsubscribeLinks": "orchestrator.channels.mail",
    "WebhookAdapter": "orchestrator.channels.webhook",
    "WebhookEndpoint": "orchestrator.channels.webhook",
    "build_router": "orchestrator.channels.configured",
    "count_segments": "orchestrator.channels.sms",
    "message_links": "orchestrator.channels.links",
    "parse_delivery_modes": "orchestrator.channels.delivery",
}

__all__ = [
    "AT_MOST_ONCE",
    "CHANNELS",
    "Adapter",
    "ApnsAdapter",
    "ApnsSettings",
    "Backoff",
    "ChannelLanes",
    "ChannelRouter",
    "DeliveryMode",
    "DeliveryOutcome",
    "DeliveryResult",
    "DeliveryStatus",
    "EmailSettings",
    "FcmAdapter",
    "FcmSettings",
    "HttpPushAdapter",
    "HttpSmsAdapter",
    "JsonSmsAdapter",
    "JsonSmsSettings",
    "Keyring",
    "MemoryAdapter",
    "MessageLinks",
    "NoAdapterError",
    "OutboxAdapter",
    "OutgoingMessage",
    "PreparedContext",
    "ProviderLimits",
    "ProviderSetupError",
    "PushRules",
    "RateLimiter",
    "SmsRules",
    "SmtpAdapter",
    "SmtpSettings",
    "TemplateError",
    "TemplateRenderer",
    "TrackingLinks",
    "TwilioSmsSettings",
    "UnsubscribeLinks",
    "WebhookAdapter",
    "WebhookEndpoint",
    "build_router",
    "count_segments",
    "message_links",
    "parse_delivery_modes",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
