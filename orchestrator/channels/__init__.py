"""Channels: sandboxed message templates and delivery adapters behind one protocol.

``_base`` holds the protocol and message types, ``templates`` the sandboxed renderer, ``_delivery`` the
classification of provider answers and the backoff schedule, ``_transport`` the pooled HTTP client (httpx)
with its deadline and size bounds, ``_limits`` the concurrency and the cross-process rate limit of each
provider, ``_lanes`` the provider calls in flight per channel. Adapters: ``_outbox`` (files, or spools:
``_spool``), ``_memory`` (the
in-memory twin used by tests), ``_smtp`` (email over pooled connections, composed by ``_mail``), ``_sms`` (a
Twilio-style form POST and a generic JSON gateway), ``_push`` (a generic FCM/APNs-shaped HTTP endpoint),
``_fcm`` (FCM HTTP v1 with service-account tokens), ``_apns`` (APNs over HTTP/2 with JWT provider tokens)
and ``_webhook`` (signed JSON to named endpoints). ``_signing`` makes the tokens of the links messages
carry, ``_links`` those links (unsubscribe, tracked clicks, the open pixel).

Each provider is configured by a frozen settings object (``SmtpSettings``, ``TwilioSmsSettings``,
``JsonSmsSettings``, ``FcmSettings``, ``ApnsSettings``, ``WebhookEndpoint``; secrets never in ``repr``)
with a ``ProviderLimits``; its adapter is built from it and released by ``close()``.

The names below are imported when first used (PEP 562), so ``import orchestrator.channels._base`` does not
load every provider's libraries (httpx, google-auth, PyJWT): the command line starts faster.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator._lazy import lazy_exports

if TYPE_CHECKING:
    from orchestrator.channels._apns import ApnsAdapter, ApnsSettings
    from orchestrator.channels._base import (
        CHANNELS,
        Adapter,
        ChannelRouter,
        DeliveryOutcome,
        DeliveryResult,
        DeliveryStatus,
        NoAdapterError,
        OutgoingMessage,
    )
    from orchestrator.channels._configured import ProviderSetupError, build_router
    from orchestrator.channels._delivery import AT_MOST_ONCE, Backoff, DeliveryMode, parse_delivery_modes
    from orchestrator.channels._fcm import FcmAdapter, FcmSettings
    from orchestrator.channels._lanes import ChannelLanes
    from orchestrator.channels._limits import ProviderLimits, RateLimiter
    from orchestrator.channels._links import MessageLinks, TrackingLinks, message_links
    from orchestrator.channels._mail import EmailSettings, UnsubscribeLinks
    from orchestrator.channels._memory import MemoryAdapter
    from orchestrator.channels._outbox import OutboxAdapter
    from orchestrator.channels._push import HttpPushAdapter, PushRules
    from orchestrator.channels._signing import Keyring
    from orchestrator.channels._sms import (
        HttpSmsAdapter,
        JsonSmsAdapter,
        JsonSmsSettings,
        SmsRules,
        TwilioSmsSettings,
        count_segments,
    )
    from orchestrator.channels._smtp import SmtpAdapter, SmtpSettings
    from orchestrator.channels._spool import SpooledMessage, read_spool, spooled_messages, unpack_spools
    from orchestrator.channels._webhook import WebhookAdapter, WebhookEndpoint
    from orchestrator.channels.templates import PreparedContext, TemplateError, TemplateRenderer

_EXPORTS: dict[str, str] = {
    "AT_MOST_ONCE": "orchestrator.channels._delivery",
    "CHANNELS": "orchestrator.channels._base",
    "Adapter": "orchestrator.channels._base",
    "ApnsAdapter": "orchestrator.channels._apns",
    "ApnsSettings": "orchestrator.channels._apns",
    "Backoff": "orchestrator.channels._delivery",
    "ChannelLanes": "orchestrator.channels._lanes",
    "ChannelRouter": "orchestrator.channels._base",
    "DeliveryMode": "orchestrator.channels._delivery",
    "DeliveryOutcome": "orchestrator.channels._base",
    "DeliveryResult": "orchestrator.channels._base",
    "DeliveryStatus": "orchestrator.channels._base",
    "EmailSettings": "orchestrator.channels._mail",
    "FcmAdapter": "orchestrator.channels._fcm",
    "FcmSettings": "orchestrator.channels._fcm",
    "HttpPushAdapter": "orchestrator.channels._push",
    "HttpSmsAdapter": "orchestrator.channels._sms",
    "JsonSmsAdapter": "orchestrator.channels._sms",
    "JsonSmsSettings": "orchestrator.channels._sms",
    "Keyring": "orchestrator.channels._signing",
    "MessageLinks": "orchestrator.channels._links",
    "MemoryAdapter": "orchestrator.channels._memory",
    "NoAdapterError": "orchestrator.channels._base",
    "OutboxAdapter": "orchestrator.channels._outbox",
    "OutgoingMessage": "orchestrator.channels._base",
    "ProviderLimits": "orchestrator.channels._limits",
    "PreparedContext": "orchestrator.channels.templates",
    "ProviderSetupError": "orchestrator.channels._configured",
    "PushRules": "orchestrator.channels._push",
    "RateLimiter": "orchestrator.channels._limits",
    "SmsRules": "orchestrator.channels._sms",
    "SpooledMessage": "orchestrator.channels._spool",
    "SmtpAdapter": "orchestrator.channels._smtp",
    "SmtpSettings": "orchestrator.channels._smtp",
    "TemplateError": "orchestrator.channels.templates",
    "TemplateRenderer": "orchestrator.channels.templates",
    "TrackingLinks": "orchestrator.channels._links",
    "TwilioSmsSettings": "orchestrator.channels._sms",
    "UnsubscribeLinks": "orchestrator.channels._mail",
    "WebhookAdapter": "orchestrator.channels._webhook",
    "WebhookEndpoint": "orchestrator.channels._webhook",
    "build_router": "orchestrator.channels._configured",
    "count_segments": "orchestrator.channels._sms",
    "message_links": "orchestrator.channels._links",
    "parse_delivery_modes": "orchestrator.channels._delivery",
    "read_spool": "orchestrator.channels._spool",
    "spooled_messages": "orchestrator.channels._spool",
    "unpack_spools": "orchestrator.channels._spool",
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
    "SpooledMessage",
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
    "read_spool",
    "spooled_messages",
    "unpack_spools",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
