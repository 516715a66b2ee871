"""Which ``customer.<attribute>`` reads of the templates the customers in a store cannot provide.

A template reads customer attributes by name; the sandbox's strict undefined makes a read of an attribute a
customer lacks fail that message. Before anything runs, ``missing_customer_attributes`` lists the reads of
attributes that no customer in the store has (a standard column that is empty for everyone, or a JSON
attribute no row carries): most likely a typo or data not ingested yet.
"""

from __future__ import annotations

from dataclasses import dataclass

import jinja2
from jinja2 import nodes

from orchestrator.engine._workspace import Workspace
from orchestrator.store import Store, customer_attribute_names

ALWAYS = frozenset({"id", "key"})


@dataclass(frozen=True)
class MissingAttribute:
    where: str  # template file (or the journey file, for inline templates)
    line: int
    attribute: str
    journey: str
    step: str

    def __str__(self) -> str:
        return (
            f"{self.where}:{self.line}: customer.{self.attribute}: no customer in the store has it "
            f"(journey {self.journey}, step {self.step})"
        )


def customer_reads(source: str) -> list[tuple[str, int]]:
    """``customer.x`` / ``customer['x']`` reads of a template source, with their first line."""
    tree = jinja2.Environment().parse(source)
    first: dict[str, int] = {}
    for node in tree.find_all(nodes.Getattr):
        if isinstance(node.node, nodes.Name) and node.node.name == "customer":
            first[node.attr] = min(first.get(node.attr, node.lineno), node.lineno)
    for item in tree.find_all(nodes.Getitem):
        if (
            isinstance(item.node, nodes.Name)
            and item.node.name == "customer"
            and isinstance(item.arg, nodes.Const)
        ):
            name = str(item.arg.value)
            first[name] = min(first.get(name, item.lineno), item.lineno)
    return sorted(first.items(), key=lambda kv: (kv[1], kv[0]))


def stored_attributes(store: Store) -> set[str]:
    """Every attribute at least one customer has (standard columns that are set, JSON attribute keys)."""
    with store.connect() as conn:
        return set(ALWAYS) | customer_attribute_names(conn)


def missing_customer_attributes(workspace: Workspace, store: Store) -> list[MissingAttribute]:
    have = stored_attributes(store)
    out: list[MissingAttribute] = []
    for plan in workspace.plans:
        renderer = workspace.renderers.get(plan.id)
        for step in plan.steps:
            send = step.send
            if send is None or renderer is None:
                continue
            sources = [
                (str(renderer.root / name), renderer.source(name))
                for name in (send.template, send.html)
                if name
            ]
            sources += [(plan.file, inline) for inline in (send.subject, send.title, send.link) if inline]
            for where, source in sources:
                for attribute, line in customer_reads(source):
                    if attribute not in have:
                        out.append(MissingAttribute(where, line, attribute, plan.id, step.id))
    return out
