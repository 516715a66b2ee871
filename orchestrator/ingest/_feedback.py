"""Opt-outs, opens and clicks that arrive through the links of sent messages, recorded in the store.

The HTTP service (``orchestrator.http._links``) checks the signed token and calls these; each is one
short write transaction.

- ``unsubscribe``: the customer's consent for the channel is withdrawn, with its source
  (``unsubscribe_link``: the button of the confirmation page; ``one_click``: a mail client's RFC 8058
  POST) and time. The contact policy reads ``consent_<channel>`` from the store at every dispatch, so it
  holds from the next send on; a customer record older than it cannot undo it. Twice is once.
- ``record_open`` / ``record_click``: an ``email_open`` / ``email_click`` event for the message's customer
  in the event table, like any ingested event (signals read it from the next tick on), with the
  properties ``message`` (the ledger key), ``journey``, ``version``, ``step``, ``channel`` and, for clicks,
  ``url``.

Repeats and retries: an open or click is stored unless the same one (same message, same URL for a click)
was stored less than ``REPEAT_WINDOW_US`` (a minute) before. A client that retries its request, a mail
proxy fetching the pixel twice or a double click are one event; the same customer opening or clicking
again later is another. The event's own-id key is derived from the message, the URL and the minute-wide
window the request falls in, so a retry in the same window is caught by the event table's unique key
even when two arrive at once; the window before is looked up with its time.
"""

from __future__ import annotations

import orjson

from orchestrator.ingest._keys import message_key
from orchestrator.language import ENGINE_EVENTS
from orchestrator.store import Store, record_opt_out, record_tracked_event, tracked_message

#: An open or click of the same message (and URL) within this long of the last one stored is the same one.
REPEAT_WINDOW_US = 60 * 1_000_000
OPEN_EVENT = "email_open"
CLICK_EVENT = "email_click"
assert {OPEN_EVENT, CLICK_EVENT} == set(ENGINE_EVENTS)  # the names validate knows without a tracking plan
#: The sources an opt-out is recorded with.
SOURCES = ("unsubscribe_link", "one_click")


def unsubscribe(store: Store, customer_id: str, channel: str, source: str, now_us: int) -> bool:
    """Withdraw the customer's consent for ``channel``; True when it changed, False when it was already
    withdrawn this way."""
    if source not in SOURCES:
        raise ValueError(f"unknown opt-out source {source!r}")
    with store.begin() as conn:
        return record_opt_out(conn, customer_id, channel, source, now_us)


def record_open(store: Store, message_id: int, now_us: int) -> bool:
    """An ``email_open`` of the ledger message ``message_id``; True when stored (False: a repeat within
    the window, or no such message)."""
    return _record(store, OPEN_EVENT, message_id, None, now_us)


def record_click(store: Store, message_id: int, url: str, now_us: int) -> bool:
    """An ``email_click`` on ``url`` in the ledger message ``message_id``; True when stored."""
    return _record(store, CLICK_EVENT, message_id, url, now_us)


def _key(name: str, ledger_key: str, url: str | None, window: int) -> int:
    return message_key(f"orchestrator\x00{name}\x00{ledger_key}\x00{url or ''}\x00{window}")


def _record(store: Store, name: str, message_id: int, url: str | None, now_us: int) -> bool:
    with store.begin() as conn:
        message = tracked_message(conn, message_id)
        if message is None or message.test:
            return False
        properties: dict[str, object] = {
            "message": message.idempotency_key,
            "journey": message.journey_id,
            "version": message.version,
            "step": message.step,
            "channel": message.channel,
        }
        if url is not None:
            properties["url"] = url
        window = now_us // REPEAT_WINDOW_US
        return record_tracked_event(
            conn,
            message.customer_key,
            name,
            now_us,
            orjson.dumps(properties).decode(),
            _key(name, message.idempotency_key, url, window),
            _key(name, message.idempotency_key, url, window - 1),
            REPEAT_WINDOW_US,
        )
