"""Per send step of a journey, what its messages did (``message_stats``), from the store alone.

From the ledger (``store.journey_messages``, test sends left out, rows queued up to the report instant):
messages **sent**, **failed**, **suppressed** and still **queued** (and any other status by name); of the
messages sent, how many were **opened** and **clicked** (the ``email_open`` / ``email_click`` events the
tracking links record name their message; without ``tracking:`` in the config there are none),
**unsubscribed** (an opt-out through a link on the message's channel within the window after the send:
the link names the customer and channel, not the message, so every message of the journey on that
channel in the window before the opt-out counts it), and **converted**: of the messages sent whose window
after the send has closed by the report instant, those whose entry's goal conversion was recorded within
the window after the send. The window is the goal's (``within``); a journey without a goal uses
``DEFAULT_WINDOW`` for opt-outs and has no conversions.

Steps come in the order of the journey's latest version, then any step only older versions had. Held-out
entries never get a message, so every figure here is of the treated arm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np

from orchestrator.durations import US_PER_SECOND, format_duration
from orchestrator.language import ENGINE_EVENTS, Journey
from orchestrator.measure._entry_rows import EntryRows
from orchestrator.store import Connection, JourneyMessages, journey_messages

DEFAULT_WINDOW = timedelta(days=7)
"""The window after a send that counts opt-outs, for a journey without a goal."""
OPEN_EVENT, CLICK_EVENT = "email_open", "email_click"
assert {OPEN_EVENT, CLICK_EVENT} == set(ENGINE_EVENTS)  # the events the tracking links record
_KNOWN = ("sent", "failed", "suppressed", "queued", "sending")


@dataclass(frozen=True)
class MessageStats:
    """One send step's messages (see the module docstring). ``matured`` is the messages sent whose window
    has closed, the denominator of ``converted``; rates are None over zero."""

    step: str
    channels: tuple[str, ...]
    template: str | None
    sent: int
    failed: int
    suppressed: int
    queued: int
    opened: int
    clicked: int
    unsubscribed: int
    matured: int
    converted: int | None  # None without a goal
    window: timedelta
    other: dict[str, int] = field(default_factory=dict)

    @property
    def open_rate(self) -> float | None:
        return self.opened / self.sent if self.sent else None

    @property
    def click_rate(self) -> float | None:
        return self.clicked / self.sent if self.sent else None

    @property
    def unsubscribe_rate(self) -> float | None:
        return self.unsubscribed / self.sent if self.sent else None

    @property
    def conversion_rate(self) -> float | None:
        return None if self.converted is None or not self.matured else self.converted / self.matured

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "channels": list(self.channels),
            "template": self.template,
            "sent": self.sent,
            "failed": self.failed,
            "suppressed": self.suppressed,
            "queued": self.queued,
            **({"other": dict(self.other)} if self.other else {}),
            "opened": self.opened,
            "open_rate": self.open_rate,
            "clicked": self.clicked,
            "click_rate": self.click_rate,
            "unsubscribed": self.unsubscribed,
            "unsubscribe_rate": self.unsubscribe_rate,
            "window": format_duration(self.window),
            "sent_with_window_closed": self.matured,
            "converted": self.converted,
            "conversion_rate": self.conversion_rate,
        }


def message_stats(
    conn: Connection,
    journey_id: str,
    journey: Journey | None,
    rows: EntryRows,
    as_of_us: int,
    window: timedelta | None,
) -> tuple[MessageStats, ...]:
    """Every send step's figures (see the module docstring); ``rows`` are the journey's entries (for their
    conversions), ``window`` the goal's (None without a goal)."""
    span = window if window is not None else DEFAULT_WINDOW
    window_us = round(span.total_seconds() * US_PER_SECOND)
    ledger = journey_messages(conn, journey_id, OPEN_EVENT, CLICK_EVENT, window_us)
    keep = ledger.created_us <= as_of_us
    sent_us = np.where(ledger.sent_us <= as_of_us, ledger.sent_us, -1)
    converted = _converted_after(ledger, sent_us, rows, window_us) if window is not None else None
    matured = (sent_us >= 0) & (sent_us + window_us <= as_of_us)
    opted = (ledger.opted_out_us >= 0) & (ledger.opted_out_us <= as_of_us)
    sends = {}
    if journey is not None:
        sends = {
            sid: step.send
            for sid, step in zip(journey.step_ids(), journey.steps, strict=True)
            if step.send is not None
        }
    order = list(sends) + sorted({str(s) for s in ledger.step[keep]} - set(sends))
    out = []
    for step in order:
        at = keep & (ledger.step == step)
        counts: dict[str, int] = {}
        if at.any():
            names, n = np.unique(ledger.status[at].astype(str), return_counts=True)
            counts = dict(zip(names.tolist(), n.tolist(), strict=True))
        was_sent = at & (sent_us >= 0)
        send = sends.get(step)
        channels = (
            tuple(send.channels) if send is not None else tuple(sorted({str(c) for c in ledger.channel[at]}))
        )
        out.append(
            MessageStats(
                step=step,
                channels=channels,
                template=None if send is None else send.template,
                sent=int(was_sent.sum()),
                failed=int(counts.get("failed", 0)),
                suppressed=int(counts.get("suppressed", 0)),
                queued=int(counts.get("queued", 0) + counts.get("sending", 0)),
                opened=int((was_sent & ledger.opened).sum()),
                clicked=int((was_sent & ledger.clicked).sum()),
                unsubscribed=int((was_sent & opted).sum()),
                matured=int((at & matured).sum()),
                converted=None if converted is None else int((at & matured & converted).sum()),
                window=span,
                other={k: int(v) for k, v in counts.items() if k not in _KNOWN},
            )
        )
    return tuple(out)


def _converted_after(
    ledger: JourneyMessages, sent_us: np.ndarray, rows: EntryRows, window_us: int
) -> np.ndarray:
    """Per ledger row: its entry's recorded conversion falls in ``[sent, sent + window]``."""
    out = np.zeros(len(ledger), bool)
    if not len(rows) or not len(ledger):
        return out
    order = np.argsort(rows.instance_id)
    ids = rows.instance_id[order]
    pos = np.minimum(np.searchsorted(ids, ledger.instance_id), len(ids) - 1)
    found = ids[pos] == ledger.instance_id
    converted_us = np.where(found, rows.converted_us[order][pos], -1)
    return (sent_us >= 0) & (converted_us >= sent_us) & (converted_us <= sent_us + window_us)
