"""Channels: sandboxed message templates and delivery adapters behind one protocol.

``base`` holds the protocol and message types, ``templates`` the sandboxed renderer, ``delivery`` the
classification of provider answers and the backoff schedule, ``transport`` the small HTTP client. Adapters:
``outbox`` (files), ``memory`` (the in-memory twin used by tests), ``smtp`` (email, composed by ``mail``),
``sms`` (a Twilio-style HTTP API), ``push`` (FCM/APNs-shaped HTTP) and ``webhook`` (signed JSON).
``signing`` makes the tokens of the links messages carry, ``links`` those links (unsubscribe, tracked
clicks, the open pixel).
"""

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
from orchestrator.channels.delivery import Backoff
from orchestrator.channels.links import MessageLinks, TrackingLinks, message_links
from orchestrator.channels.mail import EmailSettings, UnsubscribeLinks
from orchestrator.channels.memory import MemoryAdapter
from orchestrator.channels.outbox import OutboxAdapter
from orchestrator.channels.push import HttpPushAdapter, PushRules
from orchestrator.channels.signing import Keyring
from orchestrator.channels.sms import HttpSmsAdapter, SmsRules
from orchestrator.channels.smtp import SmtpAdapter, SmtpSettings
from orchestrator.channels.templates import TemplateError, TemplateRenderer
from orchestrator.channels.webhook import WebhookAdapter

__all__ = [
    "CHANNELS",
    "Adapter",
    "Backoff",
    "ChannelRouter",
    "DeliveryOutcome",
    "DeliveryResult",
    "DeliveryStatus",
    "EmailSettings",
    "HttpPushAdapter",
    "HttpSmsAdapter",
    "Keyring",
    "MemoryAdapter",
    "MessageLinks",
    "NoAdapterError",
    "OutboxAdapter",
    "OutgoingMessage",
    "PushRules",
    "SmsRules",
    "SmtpAdapter",
    "SmtpSettings",
    "TemplateError",
    "TemplateRenderer",
    "TrackingLinks",
    "UnsubscribeLinks",
    "WebhookAdapter",
    "message_links",
]
