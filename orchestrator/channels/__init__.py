"""Channels: sandboxed message templates and delivery adapters behind one protocol.

``base`` holds the protocol and message types, ``templates`` the sandboxed renderer, ``outbox`` the file
outbox adapter and ``memory`` the in-memory twin used by tests.
"""

from orchestrator.channels.base import (
    CHANNELS,
    Adapter,
    ChannelRouter,
    DeliveryResult,
    DeliveryStatus,
    NoAdapterError,
    OutgoingMessage,
)
from orchestrator.channels.memory import MemoryAdapter
from orchestrator.channels.outbox import OutboxAdapter
from orchestrator.channels.templates import TemplateError, TemplateRenderer

__all__ = [
    "CHANNELS",
    "Adapter",
    "ChannelRouter",
    "DeliveryResult",
    "DeliveryStatus",
    "MemoryAdapter",
    "NoAdapterError",
    "OutboxAdapter",
    "OutgoingMessage",
    "TemplateError",
    "TemplateRenderer",
]
