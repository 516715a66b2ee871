"""One send step rendered on demand: what ``preview`` shows and what ``send-test`` sends.

``render_step`` renders a journey's send step exactly as dispatch would for a customer of the store
(their attributes, the journey's metrics for them now, the entry event and captured events of their latest
entry), or, without a customer, for sample data: every ``customer.<name>`` the step's templates read gets
the text ``[name]``, metrics are empty. ``send_test`` sends that message once to an address given by hand,
through the configured provider, and records it in the ledger marked ``test``: never counted by caps,
reports or the backlog, and never retried.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import orjson

from orchestrator.channels import ChannelRouter, DeliveryResult, MessageLinks, NoAdapterError, OutgoingMessage
from orchestrator.clock import Clock, to_us
from orchestrator.engine._render import ADDRESS_FIELD, message_row
from orchestrator.engine._template_data import customer_reads
from orchestrator.engine._tick import Engine
from orchestrator.engine._workspace import Workspace
from orchestrator.errors import NotFoundError
from orchestrator.language import ENTRY, JourneyPlan, StepPlan
from orchestrator.signals import to_python
from orchestrator.store import Store, customer_key, customer_records, latest_instance_data, record_test_send

SAMPLE_CUSTOMER = "sample-customer"


class PreviewError(NotFoundError, LookupError):
    """The journey, step or customer asked for does not exist (the message names it)."""


@dataclass(frozen=True)
class TestSend:
    """What ``send_test`` did: the ledger key, the rendered row and the provider's answer."""

    key: str
    row: dict[str, Any]
    result: DeliveryResult


def send_step(workspace: Workspace, journey_id: str, step_id: str) -> tuple[JourneyPlan, StepPlan]:
    """The plan and the send step named; ``PreviewError`` listing the send steps when there is none."""
    try:
        plan = workspace.plan(journey_id)
    except KeyError as exc:
        raise PreviewError(str(exc.args[0])) from None
    step = next((s for s in plan.steps if s.id == step_id), None)
    if step is None or step.send is None:
        sends = ", ".join(s.id for s in plan.steps if s.send is not None) or "none"
        raise PreviewError(f"{plan.id} has no send step {step_id!r} (its send steps: {sends})")
    return plan, step


def render_step(
    workspace: Workspace,
    store: Store | None,
    journey_id: str,
    step_id: str,
    clock: Clock,
    customer_id: str | None = None,
    to: str | None = None,
    links: MessageLinks | None = None,
) -> dict[str, Any]:
    """The ledger row the step would produce now (``status`` ``queued`` when it would be sent, else
    ``suppressed``/``failed`` with the reason): for ``customer_id`` from ``store``, or for sample data;
    ``to`` replaces the customer's address for the channel. ``links`` gives templates
    ``links.unsubscribe`` as dispatch does (the sample customer gets a link for its sample id)."""
    plan, step = send_step(workspace, journey_id, step_id)
    assert step.send is not None
    template_links = None
    if links is not None:
        template_links = links.for_template(customer_id or SAMPLE_CUSTOMER, step.send.channel)
    base = {"journey": plan.id, "step": step.id, "at": clock.now().isoformat()}
    journey = {"id": plan.id, "version": plan.version, "step": step.id}
    renderer = workspace.renderer(plan.id)
    if customer_id is None or store is None:
        customer = _sample_customer(workspace, plan, step)
        if to is not None and step.send.channel in ADDRESS_FIELD:
            customer[ADDRESS_FIELD[step.send.channel]] = to
        return message_row(
            renderer=renderer,
            send=step.send.on_channel(step.send.channel),
            customer=customer,
            metrics={},
            journey=journey,
            extra={root: {} for root in _roots(plan)},
            base={"customer": SAMPLE_CUSTOMER, **base},
            links=template_links,
        )
    with store.connect() as conn:
        key = customer_key(conn, customer_id)
        if key is None:
            raise PreviewError(f"no customer {customer_id!r} in the store")
        record = customer_records(conn, [key])[key]
        if to is not None and step.send.channel in ADDRESS_FIELD:
            record = {**record, ADDRESS_FIELD[step.send.channel]: to}
        data_text = latest_instance_data(conn, plan.id, key)
    engine = Engine(store, workspace, ChannelRouter(), clock)
    metrics = engine.metrics_now(plan) if plan.metrics else {}
    values = {name: to_python(column[key]) for name, column in metrics.items()}
    data = orjson.loads(data_text) if data_text else {}
    return message_row(
        renderer=renderer,
        send=step.send.on_channel(step.send.channel),
        customer=record,
        metrics=values,
        journey=journey,
        extra={root: data.get(root, {}) for root in _roots(plan)},
        base={"customer": customer_id, "customer_key": key, **base},
        links=template_links,
    )


def send_test(
    workspace: Workspace,
    store: Store,
    router: ChannelRouter,
    journey_id: str,
    step_id: str,
    to: str,
    clock: Clock,
    customer_id: str | None = None,
    links: MessageLinks | None = None,
) -> TestSend:
    """Render the step (for ``customer_id`` or sample data), send it once to ``to`` and record it marked
    ``test``. The contact policy (consent, caps, quiet hours) does not apply: the message goes to the
    address given, not to the customer. A message that cannot be rendered is not sent: its row says why
    (``status`` ``failed``)."""
    plan, step = send_step(workspace, journey_id, step_id)
    assert step.send is not None
    row = render_step(workspace, store, journey_id, step_id, clock, customer_id, to, links)
    key = f"test-{plan.id}-{step.id}-{secrets.token_hex(8)}"
    now_us = to_us(clock.now())
    if row["status"] != "queued":
        result = DeliveryResult.failed(row.get("reason") or "not rendered", code="not_rendered")
    else:
        message = OutgoingMessage(
            idempotency_key=key,
            channel=step.send.channel,
            recipient=to,
            customer_id=str(row["customer"]),
            journey_id=plan.id,
            step=step.id,
            body=row["body"] or "",
            subject=row["subject"],
            html=row["html"],
            title=row["title"],
            link=row["link"],
            created_us=now_us,
            transactional=step.send.transactional,
        )
        try:
            result = router.send(message)
        except NoAdapterError as exc:
            result = DeliveryResult.failed(str(exc), code="no_adapter")
    with store.begin() as conn:
        record_test_send(
            conn,
            {
                "idempotency_key": key,
                "journey_id": plan.id,
                "version": plan.version,
                "customer_key": int(row.get("customer_key", 0)),
                "step": step.id,
                "channel": step.send.channel,
                "recipient": to,
                "subject": row["subject"],
                "body": row["body"],
                "html": row["html"],
                "title": row["title"],
                "link": row["link"],
                "status": "sent" if result.ok else "failed",
                "reason": None if result.ok else result.error,
                "created_us": now_us,
                "sent_us": now_us if result.ok else None,
                "provider_id": result.provider_id,
            },
        )
    return TestSend(key, row, result)


def _roots(plan: JourneyPlan) -> list[str]:
    return [ENTRY, *plan.captures] if plan.entry.kind == "event" else list(plan.captures)


def _sample_customer(workspace: Workspace, plan: JourneyPlan, step: StepPlan) -> dict[str, Any]:
    """A customer whose every attribute the step's templates read is the text ``[name]``."""
    send = step.send
    assert send is not None
    renderer = workspace.renderer(plan.id)
    sources = [renderer.source(name) for name in (send.template, send.html) if name]
    sources += [inline for inline in (send.subject, send.title, send.link) if inline]
    customer: dict[str, Any] = {"id": SAMPLE_CUSTOMER}
    for source in sources:
        for name, _line in customer_reads(source):
            customer.setdefault(name, f"[{name}]")
    if send.channel in ADDRESS_FIELD:
        customer[ADDRESS_FIELD[send.channel]] = "sample"
    return customer
