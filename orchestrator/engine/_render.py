"""Rendering one message of a send step, at dispatch time.

Templates see plain data only: ``customer`` (attributes), ``metrics`` (the journey's metrics for this
customer), ``journey`` (id, version, step), ``links`` (``links.unsubscribe``, the customer's signed
unsubscribe link for the message's channel, when the workspace config has an ``unsubscribe`` section; see
``channels._links``), and for instances that carry them ``entry`` (the entry event's properties) and the
events that ended ``wait_for`` steps, under the steps' ids. The context is checked
once per message (``TemplateRenderer.prepare``) and every part (subject, text, html, title, link) renders
from it. A template problem does not stop the journey: the ledger row is recorded ``failed`` with the
reason.

A webhook goes to a named endpoint of the business (its URL is configured with the adapter), not to an
address of the customer, so it needs no address or consent on file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from jinja2 import Template

from orchestrator.channels.templates import PreparedContext, TemplateError, TemplateRenderer
from orchestrator.language import ADDRESS_FIELD, Send


class Rendered(NamedTuple):
    """The rendered parts of one message. (A named tuple: dispatch renders a thousand at a time, and a
    frozen dataclass costs several times more to build.)"""

    body: str
    subject: str | None = None
    html: str | None = None
    title: str | None = None
    link: str | None = None


def address_for(send: Send, customer: Mapping[str, Any]) -> str | None:
    """Where the message goes: the customer's address for the channel, or the webhook's endpoint name."""
    if send.channel == "webhook":
        return send.endpoint
    value = customer.get(ADDRESS_FIELD[send.channel])
    return str(value) if value else None


def message_context(
    customer: Mapping[str, Any],
    metrics: Mapping[str, Any],
    journey: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    links: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The template context of one message (plain data; the renderer checks it)."""
    return {
        **(extra or {}),
        "customer": dict(customer),
        "metrics": dict(metrics),
        "journey": dict(journey),
        "links": dict(links or {}),
    }


def render_send(
    renderer: TemplateRenderer,
    send: Send,
    context: Mapping[str, Any] | PreparedContext,
    loaded: dict[str, Template] | None = None,
) -> Rendered:
    """Render every part of a send step; raises ``TemplateError`` on the first failure. ``loaded``: the
    caller's cache of compiled templates (``TemplateRenderer.render``)."""
    prepared = context if isinstance(context, PreparedContext) else renderer.prepare(context)
    return Rendered(
        body=renderer.render(send.template, prepared, loaded=loaded),
        subject=renderer.render_string(send.subject, prepared, name="subject") if send.subject else None,
        html=renderer.render(send.html, prepared, loaded=loaded) if send.html else None,
        title=renderer.render_string(send.title, prepared, name="title") if send.title else None,
        link=renderer.render_string(send.link, prepared, name="link") if send.link else None,
    )


def try_render(
    renderer: TemplateRenderer,
    send: Send,
    context: Mapping[str, Any],
    loaded: dict[str, Template] | None = None,
) -> tuple[Rendered | None, str | None]:
    """(rendered, None), or (None, the reason) when a template or the context is refused."""
    try:
        return render_send(renderer, send, context, loaded), None
    except TemplateError as exc:
        return None, f"template: {exc}"


def message_row(
    *,
    renderer: TemplateRenderer,
    send: Send,
    customer: Mapping[str, Any],
    metrics: Mapping[str, Any],
    journey: Mapping[str, Any],
    base: dict[str, Any],
    extra: Mapping[str, Any] | None = None,
    links: Mapping[str, str] | None = None,
    loaded: dict[str, Template] | None = None,
) -> dict[str, Any]:
    """The content of one ledger row: ``queued`` with its rendered parts (ready for the adapter), or
    ``suppressed`` (no address on file) / ``failed`` (a template refused) with the reason. ``links`` is
    the context's ``links`` (see ``channels._links.MessageLinks.for_template``); ``loaded`` the caller's
    cache of compiled templates."""
    address = address_for(send, customer)
    rendered: Rendered | None
    problem: str | None
    if not address:
        rendered, problem = None, f"no {ADDRESS_FIELD[send.channel]} on file"
    else:
        rendered, problem = try_render(
            renderer, send, message_context(customer, metrics, journey, extra, links), loaded
        )
    if rendered is None:
        # No address: suppressed (and no recipient); a template refused: failed, with the address.
        return {
            **base,
            "channel": send.channel,
            "recipient": address or None,
            "subject": None,
            "body": None,
            "html": None,
            "title": None,
            "link": None,
            "reason": problem,
            "status": "failed" if address else "suppressed",
        }
    return {
        **base,
        "channel": send.channel,
        "recipient": address,
        "subject": rendered.subject,
        "body": rendered.body,
        "html": rendered.html,
        "title": rendered.title,
        "link": rendered.link,
        "reason": None,
        "status": "queued",
    }
