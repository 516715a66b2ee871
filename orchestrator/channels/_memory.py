"""An in-memory delivery adapter: the test twin of a real provider (like httpx's mock transport)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Literal

from orchestrator.channels._base import CHANNELS, DeliveryResult, OutgoingMessage


class MemoryAdapter:
    """Records messages instead of delivering them, keeping the ``Adapter`` contract.

    - ``sent`` lists each delivered message once, in order; a repeated idempotency key answers ``sent``
      with the first delivery's provider id and is not recorded again.
    - ``attempts`` lists every ``send`` call, failed or duplicate ones included.
    - ``fail_next(n, status, error)`` makes the next ``n`` calls fail; injected failures come before the
      idempotency check, as a transport failure would, so they apply to repeated keys too.
    """

    def __init__(self, channels: Iterable[str] = CHANNELS) -> None:
        self.channels: frozenset[str] = frozenset(channels)
        self.sent: list[OutgoingMessage] = []
        self.attempts: list[OutgoingMessage] = []
        self._provider_ids: dict[str, str] = {}
        self._failures: list[tuple[Literal["retry", "failed"], str]] = []
        # The dispatcher may send from worker threads; the lock keeps "check key, then record" atomic.
        self._lock = threading.Lock()

    def fail_next(
        self, n: int = 1, status: Literal["retry", "failed"] = "retry", error: str = "injected failure"
    ) -> None:
        """Make the next ``n`` sends answer ``status`` with ``error`` (queued after earlier injections)."""
        if n < 0:
            raise ValueError("n must be >= 0")
        if status not in ("retry", "failed"):
            raise ValueError(f"status must be 'retry' or 'failed', not {status!r}")
        with self._lock:
            self._failures.extend([(status, error)] * n)

    def send(self, message: OutgoingMessage) -> DeliveryResult:
        with self._lock:
            self.attempts.append(message)
            if message.channel not in self.channels:
                return DeliveryResult.failed(f"channel {message.channel!r} not served by this adapter")
            if self._failures:
                status, error = self._failures.pop(0)
                return DeliveryResult(status, error=error)
            known = self._provider_ids.get(message.idempotency_key)
            if known is not None:
                return DeliveryResult.sent(known)
            provider_id = f"mem-{len(self.sent) + 1}"
            self._provider_ids[message.idempotency_key] = provider_id
            self.sent.append(message)
            return DeliveryResult.sent(provider_id)

    def for_customer(self, customer_id: str) -> list[OutgoingMessage]:
        """The delivered messages of one customer, in order."""
        with self._lock:
            return [m for m in self.sent if m.customer_id == customer_id]

    def clear(self) -> None:
        """Forget everything, pending failures and known keys included."""
        with self._lock:
            self.sent.clear()
            self.attempts.clear()
            self._provider_ids.clear()
            self._failures.clear()
