"""Delivery outcomes: classifying provider answers, the backoff schedule, and a memo of sent keys.

Every network adapter answers through the functions here, so "what is transient and what is permanent" is
decided in one place:

- delivered: HTTP 2xx, SMTP 250;
- transient (``retry``): timeouts, connection errors, HTTP 5xx, 408 and 429 (with its ``Retry-After``),
  SMTP 4xx;
- permanent (``failed``): any other HTTP 4xx (and 3xx: an API that redirects is misconfigured), SMTP 5xx;
  with ``suppress`` when the failure is about the address (a recipient refused with 5xx, an unregistered
  device, an invalid number).

``Backoff`` is a pure function of the attempt number and a random draw supplied by the caller, so retry
timing is reproducible in tests and simulations.

Delivery modes, per channel (``parse_delivery_modes``): ``at_least_once`` (the default: never lost; a
message in flight when a dispatcher dies is sent again with the same key, so a provider that ignores keys
may deliver it twice) or ``at_most_once`` (never twice: such a message is recorded ``uncertain`` and not
sent again).
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal, get_args
from urllib.parse import quote

from orchestrator.channels._base import CHANNELS, DeliveryResult

# Provider error text is kept short in results and ledgers: it can be a whole HTML error page.
MAX_DETAIL_CHARS = 300


def short(text: str | bytes, limit: int = MAX_DETAIL_CHARS) -> str:
    """``text`` on one line, at most ``limit`` characters (bytes are decoded leniently)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# -- HTTP ---------------------------------------------------------------------------------------------

_HEADER_SAFE = re.compile(r"[\x21-\x7e]{1,200}")


def key_header_value(idempotency_key: str) -> str:
    """``idempotency_key`` as an HTTP header value: itself when it is short printable ASCII, else its
    percent-encoded UTF-8 (still one value per key, so the provider's deduplication holds)."""
    if _HEADER_SAFE.fullmatch(idempotency_key):
        return idempotency_key
    return quote(idempotency_key.encode("utf-8", "surrogatepass"), safe="")


def parse_retry_after(value: str | None, date: str | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP date), else ``None``.

    An HTTP date is measured against the response's own ``Date`` header, so no local clock is read; without
    one (or with anything unparseable) the answer is ``None`` and the caller falls back to its backoff.
    """
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    if not date:
        return None
    try:
        until = parsedate_to_datetime(text)
        now = parsedate_to_datetime(date)
    except (TypeError, ValueError, IndexError):
        return None
    if until.tzinfo is None or now.tzinfo is None:
        return None
    return max((until - now).total_seconds(), 0.0)


def classify_http(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    provider: str,
    provider_id: str | None = None,
    suppress_statuses: Collection[int] = (),
    recipient_refused: bool = False,
) -> DeliveryResult:
    """The outcome of one HTTP answer from ``provider`` (headers with lower-case names).

    ``suppress_statuses`` are the statuses that mean "this recipient no longer exists" (404/410 for push
    tokens); ``recipient_refused`` is the adapter's own reading of the body (an invalid-number error code).
    Either turns a permanent failure into one that suppresses the address.
    """
    if 200 <= status < 300:
        return DeliveryResult.sent(provider_id or f"{provider}-{status}")
    detail = short(body) or "no details"
    code = f"http_{status}"
    if status in (408, 429) or status >= 500:
        # 408 is the server's own timeout and 429 asks to come back later: both are "not now", not "never".
        retry_after = parse_retry_after(headers.get("retry-after"), headers.get("date"))
        return DeliveryResult.retry(
            f"{provider} answered {status}: {detail}", code=code, retry_after_s=retry_after
        )
    suppress = recipient_refused or status in suppress_statuses
    reason = "refused the recipient" if suppress else "refused the message"
    return DeliveryResult.failed(f"{provider} {reason} ({status}): {detail}", code=code, suppress=suppress)


def transport_failure(provider: str, exc: BaseException) -> DeliveryResult:
    """A transient result for a network failure: ``timeout`` or ``connection``.

    A timeout may arrive wrapped (smtplib turns a read timeout into ``SMTPServerDisconnected``), so the
    exception's chain is searched for it.
    """
    if _timed_out(exc):
        return DeliveryResult.retry(f"{provider} did not answer in time: {exc}", code="timeout")
    return DeliveryResult.retry(
        f"could not reach {provider}: {type(exc).__name__}: {short(str(exc))}", code="connection"
    )


def _timed_out(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, TimeoutError):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


# -- SMTP ---------------------------------------------------------------------------------------------


def classify_smtp(code: int, reply: str | bytes, *, stage: str, recipient: str) -> DeliveryResult:
    """The outcome of an SMTP error reply ``code`` at ``stage`` (``connect``, ``sender``, ``recipient``,
    ``data``...).

    4xx is transient. 5xx is permanent; at the recipient stage it is a hard bounce, so the address is
    suppressed. Anything outside 400-599 is treated as transient (a broken exchange, not a verdict).
    """
    detail = short(reply) or "no details"
    if 500 <= code < 600:
        if stage == "recipient":
            return DeliveryResult.failed(
                f"the mail server refused {recipient} ({code}: {detail}): hard bounce",
                code=f"smtp_{code}",
                suppress=True,
            )
        return DeliveryResult.failed(
            f"the mail server refused the {stage} ({code}: {detail})", code=f"smtp_{code}"
        )
    return DeliveryResult.retry(
        f"the mail server deferred the {stage} ({code}: {detail})", code=f"smtp_{code}"
    )


# -- backoff ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter, capped, for at most ``max_attempts`` attempts in all.

    The delay before attempt ``n + 1`` (after ``n`` failed attempts) is ``min(cap_s, base_s * factor **
    (n - 1))`` scaled by a random factor in ``[1 - jitter, 1]``: ``jitter=1`` is "full jitter", ``0`` none.
    Jitter spreads the retries of many messages that failed together (a provider outage) so they do not
    return together. A provider's ``Retry-After`` is honoured when longer, up to ``max_retry_after_s``.
    """

    base_s: float = 30.0
    factor: float = 2.0
    cap_s: float = 3600.0
    max_attempts: int = 6
    jitter: float = 0.5
    max_retry_after_s: float = 86_400.0

    def __post_init__(self) -> None:
        if not (self.base_s > 0 and self.cap_s >= self.base_s and self.factor >= 1):
            raise ValueError("backoff needs base_s > 0, cap_s >= base_s and factor >= 1")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")
        if self.max_retry_after_s < 0:
            raise ValueError("max_retry_after_s must be >= 0")

    def delay(
        self, failed_attempts: int, random: Callable[[], float], retry_after_s: float | None = None
    ) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` when no attempt is left.

        ``failed_attempts`` counts the attempts made so far (>= 1); ``random`` returns a float in [0, 1)
        (``random.Random(seed).random`` in tests); it is called once per delay.
        """
        if failed_attempts < 1:
            raise ValueError("failed_attempts must be >= 1")
        if failed_attempts >= self.max_attempts:
            return None
        ceiling = self.base_s
        if self.factor > 1:
            # The exponent stops growing once past the cap: factor ** 10_000 would overflow a float.
            past_cap = 1 + math.ceil(math.log(self.cap_s / self.base_s) / math.log(self.factor))
            ceiling = min(self.cap_s, self.base_s * self.factor ** min(failed_attempts - 1, past_cap))
        draw = random()
        if not 0 <= draw < 1:
            raise ValueError(f"random() must return a float in [0, 1), not {draw!r}")
        wait = ceiling * (1 - self.jitter * draw)
        if retry_after_s is not None:
            wait = max(wait, min(retry_after_s, self.max_retry_after_s))
        return wait

    def schedule(self, random: Callable[[], float]) -> list[float]:
        """Every delay of a message that keeps failing: ``max_attempts - 1`` values."""
        delays: list[float] = []
        for attempt in range(1, self.max_attempts):
            wait = self.delay(attempt, random)
            assert wait is not None
            delays.append(wait)
        return delays


# -- sent keys ----------------------------------------------------------------------------------------


class SentKeys:
    """A bounded, thread-safe memo of idempotency key -> provider id for messages this process sent.

    Network adapters consult it before calling the provider, so a repeated key (a retry after a lost
    acknowledgement in the dispatcher, two dispatchers racing in one process) answers ``sent`` without a
    second delivery. It is a first line only: across restarts the ledger and the provider's own
    idempotency handling (the key header, the Message-ID) do the work.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._ids: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            provider_id = self._ids.get(key)
            if provider_id is not None:
                self._ids.move_to_end(key)
            return provider_id

    def add(self, key: str, provider_id: str) -> None:
        with self._lock:
            self._ids[key] = provider_id
            self._ids.move_to_end(key)
            while len(self._ids) > self.capacity:
                self._ids.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._ids)


# -- delivery modes -----------------------------------------------------------------------------------

DeliveryMode = Literal["at_least_once", "at_most_once"]
AT_LEAST_ONCE: DeliveryMode = "at_least_once"
AT_MOST_ONCE: DeliveryMode = "at_most_once"
DELIVERY_MODES: tuple[str, ...] = get_args(DeliveryMode)


def parse_delivery_modes(specs: Iterable[str]) -> dict[str, DeliveryMode]:
    """``CHANNEL=MODE`` items (each may hold several, comma-separated) as a mapping; a channel not named is
    ``at_least_once``. ``ValueError`` naming the item for an unknown channel or mode."""
    modes: dict[str, DeliveryMode] = {}
    for spec in specs:
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            channel, sep, mode = (x.strip() for x in item.partition("="))
            if not sep:
                raise ValueError(f"{item!r} is not CHANNEL=MODE (e.g. email=at_most_once)")
            if channel not in CHANNELS:
                expected = ", ".join(CHANNELS)
                raise ValueError(f"{item!r}: unknown channel {channel!r}; expected one of {expected}")
            if mode not in DELIVERY_MODES:
                expected = " or ".join(DELIVERY_MODES)
                raise ValueError(f"{item!r}: unknown delivery mode {mode!r}; expected {expected}")
            modes[channel] = AT_MOST_ONCE if mode == AT_MOST_ONCE else AT_LEAST_ONCE
    return modes
