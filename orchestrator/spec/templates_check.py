"""Checking a journey's templates before it runs: they exist and ask only for data the engine provides.

The context every template sees (see ``engine.render``) has these top-level names:

- ``customer``: the customer's attributes (id, email, first_name, timezone, any attribute ingested);
- ``metrics``: the journey's ``metrics:`` evaluated for this customer at send time;
- ``journey``: ``id``, ``version`` and ``step`` of the message.

A template that reads any other top-level name, or a metric the journey does not declare, is an error
reported at the journey line that names the template.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import jinja2
from jinja2 import nodes

from orchestrator.spec.load import LoadedJourney
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


def check_templates(loaded: LoadedJourney, templates: TemplateSource) -> list[Problem]:
    """Every problem with the templates a journey sends, located at the journey's YAML."""
    problems: list[Problem] = []
    metrics = set(loaded.journey.metrics)
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
            problems.extend(_check_source(loaded, (*base, key), templates.source(name), name, metrics))
        for key, text in inline:
            if text is not None:
                problems.extend(_check_source(loaded, (*base, key), text, None, metrics))
    return problems


def _check_source(
    loaded: LoadedJourney, path: Path_, source: str, name: str | None, metrics: set[str]
) -> list[Problem]:
    where = f"template {name!r}" if name else "the inline template"
    try:
        names = _free_names(source)
        reads = list(_metric_reads(source))
    except jinja2.TemplateSyntaxError as exc:
        return [loaded.problem(path, f"{where} line {exc.lineno}: syntax error: {exc.message}")]
    problems = []
    for var, line in names:
        if var not in CONTEXT_ROOTS:
            roots = ", ".join(sorted(CONTEXT_ROOTS))
            problems.append(
                loaded.problem(
                    path, f"{where} line {line}: undefined variable {var!r} (templates can use {roots})"
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
