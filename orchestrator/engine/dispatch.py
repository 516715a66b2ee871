"""Dispatch: queued ledger rows to channel adapters, after the tick's transaction has committed.

Each message goes out with its ledger key as the idempotency key, so a crash between the provider's
acceptance and the recording of it leads at worst to a repeated attempt that the provider recognises.
Held-out customers are refused here a second time, whatever put their message in the queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.channels.base import ChannelRouter, OutgoingMessage
from orchestrator.clock import Clock, to_us
from orchestrator.store import Store
from orchestrator.store import journeys as sj

BATCH = 1000


@dataclass
class DispatchReport:
    delivered: int = 0
    failed: int = 0
    retry: int = 0
    refused: int = 0


def dispatch_queued(
    store: Store, router: ChannelRouter, clock: Clock, limit: int | None = None
) -> DispatchReport:
    """Try every queued message once (up to ``limit``), recording each outcome in batches.

    A message whose adapter asks for a retry stays queued for the next call.
    """
    report = DispatchReport()
    handled = 0
    last_id = 0
    while limit is None or handled < limit:
        with store.connect() as conn:
            batch = sj.queued_messages(conn, BATCH, after_id=last_id)
        if not batch:
            break
        outcomes = [_deliver(message, router, to_us(clock.now()), report) for message in batch]
        with store.begin() as conn:
            sj.record_deliveries(conn, outcomes)
        handled += len(batch)
        last_id = batch[-1].id
    return report


def _outcome(
    message_id: int,
    status: str,
    reason: str | None = None,
    provider_id: str | None = None,
    sent_us: int | None = None,
) -> dict[str, Any]:
    return {
        "id": message_id,
        "status": status,
        "reason": reason,
        "provider_id": provider_id,
        "sent_us": sent_us,
    }


def _deliver(
    message: sj.QueuedMessage, router: ChannelRouter, now_us: int, report: DispatchReport
) -> dict[str, Any]:
    if message.held_out:
        report.refused += 1
        return _outcome(message.id, "refused", "customer is in the holdout")
    outgoing = OutgoingMessage(
        idempotency_key=message.idempotency_key,
        channel=message.channel,
        recipient=message.recipient,
        customer_id=message.customer_id,
        journey_id=message.journey_id,
        step=message.step,
        body=message.body,
        subject=message.subject,
        html=message.html,
        title=message.title,
        link=message.link,
        created_us=message.created_us,
    )
    try:
        result = router.route(message.channel).send(outgoing)
    except Exception as exc:  # an adapter broke its contract by raising; keep the message for a retry
        report.retry += 1
        return _outcome(message.id, "queued", f"adapter error: {exc}")
    if result.status == "sent":
        report.delivered += 1
        return _outcome(message.id, "sent", provider_id=result.provider_id, sent_us=now_us)
    if result.status == "retry":
        report.retry += 1
        return _outcome(message.id, "queued", result.error)
    report.failed += 1
    return _outcome(message.id, "failed", result.error)
