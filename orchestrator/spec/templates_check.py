"""Checking a journey's templates before it runs: they exist and ask only for data the engine provides.

The context every template sees (see ``engine.render``) has these top-level names:

- ``customer``: the customer's attributes (id, email, first_name, timezone, any attribute ingested);
- ``metrics``: the journey's ``metrics:`` evaluated for this customer at send time;
- ``journey``: ``id``, ``version`` and ``step`` of the message;
- ``entry``: the properties of the event that started the instance (journeys entered by an event);
- ``<wait_for step id>``: the properties of the event that ended that wait (empty if it timed out).

A template that reads any other top-level name, or a metric the journey does not declare, is an error
reported at the journey line that names the template.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

import jinja2
from jinja2 import nodes

from orchestrator.spec.load import LoadedJourney
from orchestrator.spec.plan import instance_roots
from orchestrator.spec.yamlio import Path_, Problem

CONTEXT_ROOTS = frozenset({"customer", "metrics", "journey"})


class TemplateSource(Protocol):
    def exists(self, name: str) -> bool: ...
    def source(self, name: str) -> str: ...


def _metric_reads(source: str) -> Iterator[tuple[str, int]]:
    """``metrics.x`` and ``metrics['x']`` reads in a template, with their lines."""
    tree = jinja2.Environment().parse(source)
    for node in tree.find_all(nodes.Getattr):
        if isinstance(node.node, nodes.Name) and node.node.name == "metrics":
            yield node.attr, node.lineno
    for item in tree.find_all(nodes.Getitem):
        if (
            isinstance(item.node, nodes.Name)
            and item.node.name == "metrics"
            and isinstance(item.arg, nodes.Const)
            and isinstance(item.arg.value, str)
        ):
            yield item.arg.value, item.lineno


def _free_names(source: str) -> list[tuple[str, int]]:
    env = jinja2.Environment()
    tree = env.parse(source)
    from jinja2 import meta

    undeclared = meta.find_undeclared_variables(tree)
    first: dict[str, int] = {}
    for node in tree.find_all(nodes.Name):
        if node.ctx == "load" and node.name in undeclared:
            first.setdefault(node.name, node.lineno)
    return sorted(first.items(), key=lambda kv: kv[1])


def check_templates(
    loaded: LoadedJourney, templates: TemplateSource, shared_metrics: Iterable[str] = ()
) -> list[Problem]:
    """Every problem with the templates a journey sends, located at the journey's YAML. Templates may read
    the journey's metrics and the ``shared_metrics`` of its workspace."""
    problems: list[Problem] = []
    metrics = set(loaded.journey.metrics) | set(shared_metrics)
    roots = set(CONTEXT_ROOTS) | instance_roots(loaded.journey)
    for i, step in enumerate(loaded.journey.steps):
        send = step.send
        if send is None:
            continue
        base: Path_ = ("steps", i, "send")
        files = [("template", send.template), ("html", send.html)]
        inline = [("subject", send.subject), ("title", send.title), ("link", send.link)]
        for key, name in files:
            if name is None:
                continue
            if not templates.exists(name):
                problems.append(loaded.problem((*base, key), f"template {name!r} not found"))
                continue
            problems.extend(_check_source(loaded, (*base, key), templates.source(name), name, metrics, roots))
        for key, text in inline:
            if text is not None:
                problems.extend(_check_source(loaded, (*base, key), text, None, metrics, roots))
    return problems


def _check_source(
    loaded: LoadedJourney, path: Path_, source: str, name: str | None, metrics: set[str], roots: set[str]
) -> list[Problem]:
    where = f"template {name!r}" if name else "the inline template"
    try:
        names = _free_names(source)
        reads = list(_metric_reads(source))
    except jinja2.TemplateSyntaxError as exc:
        return [loaded.problem(path, f"{where} line {exc.lineno}: syntax error: {exc.message}")]
    problems = []
    for var, line in names:
        if var == "entry" and var not in roots:
            problems.append(
                loaded.problem(
                    path, f"{where} line {line}: entry exists only in journeys entered by an event"
                )
            )
        elif var not in roots:
            listing = ", ".join(sorted(roots))
            problems.append(
                loaded.problem(
                    path, f"{where} line {line}: undefined variable {var!r} (templates can use {listing})"
                )
            )
    for metric, line in reads:
        if metric not in metrics:
            declared = ", ".join(sorted(metrics)) or "none"
            problems.append(
                loaded.problem(
                    path,
                    f"{where} line {line}: metrics.{metric} is not a metric of this journey "
                    f"(declared: {declared})",
                )
            )
    return problems


def instance_reads(loaded: LoadedJourney, templates: TemplateSource) -> dict[str, set[str]]:
    """Per ``wait_for`` step id, the properties its templates read as ``<step id>.<property>`` (the engine
    keeps those properties of the event that ended the wait). Templates that cannot be read are skipped:
    ``check_templates`` reports them."""
    roots = instance_roots(loaded.journey) - {"entry"}
    reads: dict[str, set[str]] = {root: set() for root in roots}
    if not roots:
        return reads
    for step in loaded.journey.steps:
        send = step.send
        if send is None:
            continue
        sources = [send.subject, send.title, send.link]
        for name in (send.template, send.html):
            if name is not None and templates.exists(name):
                sources.append(templates.source(name))
        for source in sources:
            if source is None:
                continue
            try:
                tree = jinja2.Environment().parse(source)
            except jinja2.TemplateSyntaxError:
                continue
            for node in tree.find_all(nodes.Getattr):
                if isinstance(node.node, nodes.Name) and node.node.name in roots:
                    reads[node.node.name].add(node.attr)
            for item in tree.find_all(nodes.Getitem):
                if (
                    isinstance(item.node, nodes.Name)
                    and item.node.name in roots
                    and isinstance(item.arg, nodes.Const)
                    and isinstance(item.arg.value, str)
                ):
                    reads[item.node.name].add(item.arg.value)
    return reads
