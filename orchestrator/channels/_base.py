"""The delivery protocol and the message types every adapter speaks.

Everything a delivery adapter needs to know lives in this module, the way APScheduler keeps its interfaces in
one place: the message handed to an adapter (``OutgoingMessage``), what it answers (``DeliveryResult``), the
``Adapter`` protocol itself and the ``ChannelRouter`` that picks an adapter per channel. Nothing here renders
templates or touches the store.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, Protocol, get_args, runtime_checkable

from orchestrator.errors import SetupError
from orchestrator.language import CHANNELS

DeliveryStatus = Literal["sent", "retry", "failed"]
_STATUSES: frozenset[str] = frozenset(get_args(DeliveryStatus))
# The same three outcomes in the words of delivery: what the retry loop and the policy act on.
DeliveryOutcome = Literal["delivered", "transient", "permanent"]
_OUTCOMES: dict[str, DeliveryOutcome] = {"sent": "delivered", "retry": "transient", "failed": "permanent"}


@dataclass(frozen=True)
class OutgoingMessage:
    """One rendered message, ready for a provider.

    ``idempotency_key`` identifies the message for its whole life: the dispatcher derives it from (customer,
    journey, step, entry) so a retry after a crash sends the same key again, and the adapter passes it to the
    provider as the provider's idempotency key. ``transactional`` marks a message the customer needs
    whatever their marketing choices (a receipt): an email of that kind carries no unsubscribe headers.
    ``subject``/``html`` only mean something for email, ``title``/``link``/``data`` only for push
    (``data``: extra string key/values for the app); adapters ignore fields their channel has no use for.
    ``first_attempt`` is a promise from the sender that no message with this key was ever handed to any
    adapter before (dispatch sets it for a ledger row never marked in flight): an adapter that has to look a
    key up to keep it idempotent (the spooled file outbox) may skip the lookup. False promises nothing.
    """

    idempotency_key: str
    channel: str
    recipient: str
    customer_id: str
    journey_id: str
    step: str
    body: str
    subject: str | None = None
    html: str | None = None
    title: str | None = None
    link: str | None = None
    created_us: int = 0
    # Left out of the hash (a dict cannot be hashed) but compared like every other field.
    data: dict[str, str] | None = field(default=None, hash=False)
    transactional: bool = False
    first_attempt: bool = False

    def __post_init__(self) -> None:
        # Refuse malformed messages where they are made, not in the middle of a provider call.
        if self.channel not in CHANNELS:
            raise ValueError(f"unknown channel {self.channel!r}; expected one of {', '.join(CHANNELS)}")
        if not self.idempotency_key:
            raise ValueError("an outgoing message needs a non-empty idempotency_key")
        if self.data is not None and not all(type(k) is str and type(v) is str for k, v in self.data.items()):
            # Push providers (FCM data, APNs custom keys) carry strings only; refuse anything else here.
            raise ValueError("message data must map strings to strings")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (``from_dict`` reads it back)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutgoingMessage:
        """Inverse of ``to_dict``; unknown keys are refused so a typo is not silently dropped."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown OutgoingMessage fields: {', '.join(unknown)}")
        return cls(**dict(data))


@dataclass(frozen=True)
class DeliveryResult:
    """What an adapter answers for one send.

    ``sent`` (outcome ``delivered``): the provider accepted the message (``provider_id`` is its reference).
    ``retry`` (``transient``): timeout, connection error, throttling, 5xx, SMTP 4xx; sending the same message
    again later may succeed, and ``retry_after_s`` is the provider's own wait hint when it gave one.
    ``failed`` (``permanent``): invalid recipient, rejected content, 4xx, SMTP 5xx; sending it again will not
    help. ``suppress`` marks the permanent failures caused by the address itself (invalid number, hard bounce,
    unregistered device): the address must not be used again. ``code`` is a short machine-readable cause
    (``http_503``, ``smtp_550``, ``timeout``, ``invalid_number``...), ``error`` the sentence for people.
    """

    status: DeliveryStatus
    provider_id: str | None = None
    error: str | None = None
    code: str | None = None
    retry_after_s: float | None = None
    suppress: bool = False

    def __post_init__(self) -> None:
        if self.status not in _STATUSES:
            raise ValueError(f"unknown delivery status {self.status!r}")
        if self.retry_after_s is not None:
            if self.status != "retry":
                raise ValueError("retry_after_s only applies to a retry")
            if not (math.isfinite(self.retry_after_s) and self.retry_after_s >= 0):
                raise ValueError(f"retry_after_s must be a finite number >= 0, not {self.retry_after_s!r}")
        if self.suppress and self.status != "failed":
            raise ValueError("only a permanent failure can suppress the address")

    @classmethod
    def sent(cls, provider_id: str) -> DeliveryResult:
        return cls("sent", provider_id=provider_id)

    @classmethod
    def retry(
        cls, error: str, *, code: str | None = None, retry_after_s: float | None = None
    ) -> DeliveryResult:
        return cls("retry", error=error, code=code, retry_after_s=retry_after_s)

    @classmethod
    def failed(cls, error: str, *, code: str | None = None, suppress: bool = False) -> DeliveryResult:
        return cls("failed", error=error, code=code, suppress=suppress)

    @property
    def ok(self) -> bool:
        return self.status == "sent"

    @property
    def outcome(self) -> DeliveryOutcome:
        """``delivered``, ``transient`` (retry later) or ``permanent`` (do not retry)."""
        return _OUTCOMES[self.status]


@runtime_checkable
class Adapter(Protocol):
    """A delivery adapter: hands messages of some channels to one provider.

    Contract every implementation keeps:

    - ``idempotency_key`` is the provider's idempotency key: sending a message whose key was already sent
      must not deliver it a second time; it answers ``sent`` again (with the same ``provider_id`` when the
      provider reports one). The dispatcher relies on this to retry after a crash without double sends.
    - ``send`` never raises for provider or transport errors: it returns ``DeliveryResult.retry`` for
      transient ones and ``DeliveryResult.failed`` for permanent ones. An exception from ``send`` is a bug.
    - ``send`` bounds its own time (connect and read timeouts); a hung provider must become ``retry``, not a
      hung dispatcher.

    Optional, read with ``getattr`` (not part of the checked protocol): ``concurrency``, the provider calls
    the adapter takes at once (dispatch runs that many for its channels), and ``close()``, which releases
    its connections (``ChannelRouter.close`` calls it).
    """

    channels: frozenset[str]

    def send(self, message: OutgoingMessage) -> DeliveryResult:
        """Deliver ``message`` at most once per ``idempotency_key``; never raise for provider errors."""
        ...


class NoAdapterError(SetupError, LookupError):
    """No adapter is registered for a channel."""


class ChannelRouter:
    """Holds one adapter per channel and routes messages to it."""

    def __init__(self, adapters: Iterable[Adapter] = ()) -> None:
        self._by_channel: dict[str, Adapter] = {}
        for adapter in adapters:
            self.register(adapter)

    def register(self, adapter: Adapter, channels: Iterable[str] | None = None) -> None:
        """Route ``channels`` (default: all the adapter serves) to ``adapter``.

        A channel already routed elsewhere is refused: two adapters for one channel would make delivery
        depend on registration order.
        """
        wanted = frozenset(adapter.channels if channels is None else channels)
        for channel in sorted(wanted):
            if channel not in CHANNELS:
                raise ValueError(f"unknown channel {channel!r}; expected one of {', '.join(CHANNELS)}")
            if channel not in adapter.channels:
                raise ValueError(f"{type(adapter).__name__} does not serve channel {channel!r}")
            current = self._by_channel.get(channel)
            if current is not None and current is not adapter:
                raise ValueError(f"channel {channel!r} already routed to {type(current).__name__}")
        for channel in wanted:
            self._by_channel[channel] = adapter

    @property
    def channels(self) -> frozenset[str]:
        return frozenset(self._by_channel)

    def route(self, channel: str) -> Adapter:
        """The adapter for ``channel``; ``NoAdapterError`` naming the channel when there is none."""
        try:
            return self._by_channel[channel]
        except KeyError:
            routed = ", ".join(sorted(self._by_channel)) or "none"
            raise NoAdapterError(
                f"no delivery adapter for channel {channel!r} (routed channels: {routed})"
            ) from None

    def send(self, message: OutgoingMessage) -> DeliveryResult:
        """Send through the adapter of ``message.channel`` (raises ``NoAdapterError`` if none)."""
        return self.route(message.channel).send(message)

    @property
    def adapters(self) -> list[Adapter]:
        """Each routed adapter once, in the order of its first channel."""
        unique: dict[int, Adapter] = {}
        for channel in sorted(self._by_channel):
            adapter = self._by_channel[channel]
            unique.setdefault(id(adapter), adapter)
        return list(unique.values())

    def close(self) -> None:
        """Close every adapter that has a ``close()`` (pooled connections, rate limiter files), once each;
        one that fails to close does not keep the others open."""
        errors: list[str] = []
        for adapter in self.adapters:
            close = getattr(adapter, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as exc:
                    errors.append(f"{type(adapter).__name__}: {exc}")
        if errors:
            raise RuntimeError("could not close every adapter: " + "; ".join(errors))
