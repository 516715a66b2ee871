"""Provider calls in flight, per channel: what dispatch (and anything else that sends in bulk) runs through.

A provider call mostly waits on the network, so several run at once; how many is a property of the channel's
provider (an SMTP server takes a few connections, an HTTP API many requests). ``ChannelLanes`` keeps one
thread pool per channel, as wide as that channel's concurrency: the ``concurrency`` mapping when it names
the channel, else the adapter's own ``concurrency`` attribute (from its provider settings,
``ProviderLimits.concurrency``), else ``default``. ``send_all`` hands a list of messages to their lanes and
answers their results in the same order. The lanes bound the calls in flight; the provider's rate limit,
which holds across processes, is taken inside each adapter right before its call.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType

from orchestrator.channels._base import ChannelRouter, DeliveryResult, OutgoingMessage


def call(router: ChannelRouter, message: OutgoingMessage) -> DeliveryResult:
    """Send ``message`` through its channel's adapter; an adapter that raises (a broken contract) or a
    channel without an adapter is a transient ``adapter_error``, never an exception."""
    try:
        return router.route(message.channel).send(message)
    except Exception as exc:
        return DeliveryResult.retry(f"adapter error: {exc}", code="adapter_error")


class ChannelLanes:
    """One thread pool per channel (see the module docstring). Thread pools start on first use and stop
    with ``close`` (or the ``with`` block)."""

    def __init__(
        self, router: ChannelRouter, concurrency: Mapping[str, int] | None = None, *, default: int = 4
    ) -> None:
        for channel, n in (concurrency or {}).items():
            if n < 1:
                raise ValueError(f"the concurrency of {channel} must be at least 1, not {n}")
        self.router = router
        self.concurrency = dict(concurrency or {})
        self.default = max(1, default)
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._many: dict[str, bool] = {}
        self._lock = threading.Lock()

    def width(self, channel: str) -> int:
        """The calls in flight at once for ``channel``."""
        if channel in self.concurrency:
            return self.concurrency[channel]
        try:
            adapter = self.router.route(channel)
        except LookupError:
            return self.default
        own = getattr(adapter, "concurrency", None)
        return own if isinstance(own, int) and own >= 1 else self.default

    def group(self, channel: str) -> int:
        """The messages ``channel``'s adapter asks to be handed at once (its ``group`` attribute: the
        spooled file outbox writes one spool per group), else 0."""
        try:
            adapter = self.router.route(channel)
        except LookupError:
            return 0
        own = getattr(adapter, "group", None)
        return own if isinstance(own, int) and own >= 1 else 0

    def send_all(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        """Every message's result, in order; each channel's messages run ``width(channel)`` at a time.

        A channel whose adapter has ``send_many`` (the HTTP adapters: their requests wait on one event
        loop) gets its messages in one call, bounded by its width, from one thread; the others get a
        thread per call in flight."""
        if len(messages) == 1:
            return [call(self.router, messages[0])]
        results: list[DeliveryResult | None] = [None] * len(messages)
        groups: dict[str, list[int]] = {}
        futures: list[tuple[int, Future[DeliveryResult] | None]] = []
        for index, message in enumerate(messages):
            if self._batches(message.channel):
                groups.setdefault(message.channel, []).append(index)
                continue
            pool = self._pool(message.channel)
            futures.append((index, None if pool is None else pool.submit(call, self.router, message)))
        # A group goes to a lane thread when other work runs beside it, else it runs here.
        grouped: list[tuple[list[int], Future[list[DeliveryResult]]]] = []
        here: list[tuple[str, list[int]]] = []
        for channel, indexes in groups.items():
            pool = self._pool(channel)
            if pool is None or (len(groups) == 1 and not futures):
                here.append((channel, indexes))
            else:
                batch = [messages[i] for i in indexes]
                grouped.append((indexes, pool.submit(self._call_many, channel, batch)))
        for channel, indexes in here:
            answers = self._call_many(channel, [messages[i] for i in indexes])
            for i, result in zip(indexes, answers, strict=True):
                results[i] = result
        # Channels one call wide run here, in order, while the others' lanes work.
        for index, future in futures:
            results[index] = future.result() if future is not None else call(self.router, messages[index])
        for indexes, group in grouped:
            for i, result in zip(indexes, group.result(), strict=True):
                results[i] = result
        return [result for result in results if result is not None]

    def _batches(self, channel: str) -> bool:
        """Whether ``channel``'s adapter takes a whole group (``send_many``)."""
        known = self._many.get(channel)
        if known is None:
            try:
                adapter = self.router.route(channel)
            except LookupError:
                known = False
            else:
                known = callable(getattr(adapter, "send_many", None))
            self._many[channel] = known
        return known

    def _call_many(self, channel: str, messages: list[OutgoingMessage]) -> list[DeliveryResult]:
        """``send_many`` of ``channel``'s adapter; if it raises (a broken contract) or answers the wrong
        number of results, every message is a transient ``adapter_error``."""
        try:
            send_many = getattr(self.router.route(channel), "send_many")  # noqa: B009 - not on the protocol
            results: list[DeliveryResult] = send_many(messages, self.width(channel))
            if len(results) != len(messages):
                raise ValueError(f"{len(results)} results for {len(messages)} messages")
            return list(results)
        except Exception as exc:
            return [DeliveryResult.retry(f"adapter error: {exc}", code="adapter_error") for _ in messages]

    def _pool(self, channel: str) -> ThreadPoolExecutor | None:
        pool = self._pools.get(channel)
        if pool is not None:
            return pool
        width = self.width(channel)
        if width <= 1:
            return None
        with self._lock:
            pool = self._pools.get(channel)
            if pool is None:
                pool = ThreadPoolExecutor(width, thread_name_prefix=f"send-{channel}")
                self._pools[channel] = pool
        return pool

    def close(self) -> None:
        """Stop the lanes' threads (after the calls in flight)."""
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.shutdown(wait=True)

    def __enter__(self) -> ChannelLanes:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
