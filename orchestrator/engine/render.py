"""Rendering one send step for a set of customers into ledger rows.

Templates see plain data only: ``customer`` (attributes), ``metrics`` (the journey's metrics for this
customer), ``journey`` (id, version, step), and for instances that carry them ``entry`` (the entry event's
properties) and the events that ended ``wait_for`` steps, under the steps' ids. Rendering, address and
consent problems do not stop the journey: the message is recorded with status ``failed`` or
``suppressed`` and the reason.

A webhook goes to a named endpoint of the business (its URL is configured with the adapter), not to an
address of the customer, so it needs no address or consent on file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.channels.templates import TemplateError, TemplateRenderer
from orchestrator.spec.models import Send

ADDRESS_FIELD = {"email": "email", "sms": "phone", "push": "push_token"}


@dataclass(frozen=True)
class Rendered:
    body: str
    subject: str | None = None
    html: str | None = None
    title: str | None = None
    link: str | None = None


def render_send(renderer: TemplateRenderer, send: Send, context: Mapping[str, Any]) -> Rendered:
    """Render every part of a send step; raises ``TemplateError`` on the first failure."""
    return Rendered(
        body=renderer.render(send.template, context),
        subject=renderer.render_string(send.subject, context, name="subject") if send.subject else None,
        html=renderer.render(send.html, context) if send.html else None,
        title=renderer.render_string(send.title, context, name="title") if send.title else None,
        link=renderer.render_string(send.link, context, name="link") if send.link else None,
    )


def message_row(
    *,
    renderer: TemplateRenderer,
    send: Send,
    customer: Mapping[str, Any],
    metrics: Mapping[str, Any],
    journey: Mapping[str, Any],
    base: dict[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One ledger row for one customer: queued with its rendered content, or suppressed/failed with why."""
    row = {
        **base,
        "channel": send.channel,
        "recipient": None,
        "subject": None,
        "body": None,
        "html": None,
        "title": None,
        "link": None,
        "reason": None,
    }
    if send.channel == "webhook":
        address = send.endpoint
    else:
        address = customer.get(ADDRESS_FIELD[send.channel])
        if not address:
            return {**row, "status": "suppressed", "reason": f"no {ADDRESS_FIELD[send.channel]} on file"}
        if customer.get(f"consent_{send.channel}") is False:
            return {
                **row,
                "recipient": address,
                "status": "suppressed",
                "reason": f"no consent for {send.channel}",
            }
    context = {
        **(extra or {}),
        "customer": dict(customer),
        "metrics": dict(metrics),
        "journey": dict(journey),
    }
    try:
        rendered = render_send(renderer, send, context)
    except TemplateError as exc:
        return {**row, "recipient": address, "status": "failed", "reason": f"template: {exc}"}
    return {
        **row,
        "recipient": address,
        "status": "queued",
        "subject": rendered.subject,
        "body": rendered.body,
        "html": rendered.html,
        "title": rendered.title,
        "link": rendered.link,
    }
