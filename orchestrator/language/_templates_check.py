"""Checking a journey's templates before it runs: they exist and ask only for data the engine provides.

The context every template sees (see ``engine._render``) has these top-level names:

- ``customer``: the customer's attributes (id, email, first_name, timezone, any attribute ingested);
- ``metrics``: the journey's ``metrics:`` evaluated for this customer at send time;
- ``journey``: ``id``, ``version`` and ``step`` of the message;
- ``links``: ``unsubscribe``, the customer's signed unsubscribe link (with an ``unsubscribe`` section in
  the workspace config; without one a message reading it fails);
- ``entry``: the properties of the event that started the instance (journeys entered by an event);
- ``<wait_for step id>``: the properties of the event that ended that wait (empty if it timed out).

A template that reads any other top-level name (or a name the sandbox does not provide, such as
``lipsum``), a metric the journey does not declare, a filter or test that does not exist, or that
includes, imports or extends a file that is missing or outside the template root (or whose name is only
known when rendering) is an error reported at the journey line that names the template. Included,
imported and extended files are checked the same way.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from pathlib import PurePosixPath
from typing import Protocol

import jinja2
from jinja2 import meta, nodes

from orchestrator.language._journey_file import LoadedJourney
from orchestrator.language._plan import instance_roots
from orchestrator.language._yamlio import Path_, Problem

CONTEXT_ROOTS = frozenset({"customer", "metrics", "journey", "links"})
#: The names under ``links`` (see ``channels._links.MessageLinks.for_template``).
LINK_NAMES = frozenset({"unsubscribe"})


class TemplateSource(Protocol):
    def exists(self, name: str) -> bool: ...
    def source(self, name: str) -> str: ...


def _environment(templates: TemplateSource) -> jinja2.Environment:
    """The environment templates render in (the renderer's sandbox, whose globals, filters and tests are
    all a template can use), or a plain one for a source that does not say."""
    env = getattr(templates, "environment", None)
    return env if isinstance(env, jinja2.Environment) else jinja2.Environment()


def _metric_reads(tree: nodes.Template) -> Iterator[tuple[str, int]]:
    """``metrics.x`` and ``metrics['x']`` reads in a template, with their lines."""
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


def _free_names(tree: nodes.Template, env: jinja2.Environment) -> list[tuple[str, int]]:
    """Names the template reads from its context (not its own variables, not the environment's globals)."""
    undeclared = meta.find_undeclared_variables(tree) - set(env.globals)
    first: dict[str, int] = {}
    for node in tree.find_all(nodes.Name):
        if node.ctx == "load" and node.name in undeclared:
            first.setdefault(node.name, node.lineno)
    return sorted(first.items(), key=lambda kv: kv[1])


def outside_root(name: str) -> bool:
    """Whether a template name could leave the template root (absolute, ``..``, a drive, a backslash)."""
    path = PurePosixPath(name)
    return (
        not name
        or "\\" in name
        or "\x00" in name
        or path.is_absolute()
        or ".." in path.parts
        or re.match(r"[A-Za-z]:", name) is not None
    )


def _near(name: str, templates: TemplateSource) -> str:
    """ "; did you mean ...?" for a missing template name, from the names the template root holds (when
    its loader can list them); "" when none is close."""
    loader = _environment(templates).loader
    try:
        known = loader.list_templates() if loader is not None else []
    except TypeError:  # a loader that cannot list its templates
        known = []
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_templates(
    loaded: LoadedJourney, templates: TemplateSource, shared_metrics: Iterable[str] = ()
) -> list[Problem]:
    """Every problem with the templates a journey sends, located at the journey's YAML. Templates may read
    the journey's metrics and the ``shared_metrics`` of its workspace; the files they include, import or
    extend must exist under the template root, and are checked the same way."""
    problems: list[Problem] = []
    checker = _Checker(loaded, templates, set(loaded.journey.metrics) | set(shared_metrics))
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
            if outside_root(name):
                problems.append(
                    loaded.problem((*base, key), f"template {name!r} is outside the template root")
                )
            elif not templates.exists(name):
                problems.append(
                    loaded.problem((*base, key), f"template {name!r} not found{_near(name, templates)}")
                )
            else:
                problems.extend(checker.check((*base, key), templates.source(name), f"template {name!r}"))
        for key, text in inline:
            if text is not None:
                problems.extend(checker.check((*base, key), text, "the inline template"))
    return problems


class _Checker:
    """Checks template sources for one journey, following includes, imports and extends."""

    def __init__(self, loaded: LoadedJourney, templates: TemplateSource, metrics: set[str]) -> None:
        self.loaded = loaded
        self.templates = templates
        self.metrics = metrics
        self.roots = set(CONTEXT_ROOTS) | instance_roots(loaded.journey)
        self.env = _environment(templates)

    def check(
        self, path: Path_, source: str, where: str, seen: frozenset[str] = frozenset()
    ) -> list[Problem]:
        loaded = self.loaded
        try:
            tree = self.env.parse(source)
        except jinja2.TemplateSyntaxError as exc:
            return [loaded.problem(path, f"{where} line {exc.lineno}: syntax error: {exc.message}")]
        problems: list[Problem] = []
        for kind, table, found in (
            ("filter", self.env.filters, tree.find_all(nodes.Filter)),
            ("test", self.env.tests, tree.find_all(nodes.Test)),
        ):
            for node in found:
                if node.name not in table:
                    hint = _suggest(node.name, [n for n in table if not n.startswith("_")])
                    problems.append(
                        loaded.problem(
                            path, f"{where} line {node.lineno}: no {kind} named {node.name!r}{hint}"
                        )
                    )
        try:
            names = _free_names(tree, self.env)
        except jinja2.TemplateError as exc:  # what compiling finds beyond the checks above
            if not problems:
                line = getattr(exc, "lineno", None)
                problems.append(loaded.problem(path, f"{where} line {line}: {exc}"))
            names = []
        for var, line in names:
            if var == "entry" and var not in self.roots:
                problems.append(
                    loaded.problem(
                        path, f"{where} line {line}: entry exists only in journeys entered by an event"
                    )
                )
            elif var not in self.roots:
                listing = ", ".join(sorted(self.roots))
                problems.append(
                    loaded.problem(
                        path, f"{where} line {line}: undefined variable {var!r} (templates can use {listing})"
                    )
                )
        for metric, line in _metric_reads(tree):
            if metric not in self.metrics:
                declared = ", ".join(sorted(self.metrics)) or "none"
                problems.append(
                    loaded.problem(
                        path,
                        f"{where} line {line}: metrics.{metric} is not a metric of this journey "
                        f"(declared: {declared})",
                    )
                )
        for line, _root, name in _root_reads(tree, {"links"}):
            if name not in LINK_NAMES:
                problems.append(
                    loaded.problem(
                        path,
                        f"{where} line {line}: links.{name} is not a link the engine provides "
                        f"(links: {', '.join(sorted(LINK_NAMES))}){_suggest(name, LINK_NAMES)}",
                    )
                )
        for target in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
            problems.extend(self._target(path, where, target, seen))
        return problems

    def _target(self, path: Path_, where: str, node: nodes.Node, seen: frozenset[str]) -> list[Problem]:
        loaded = self.loaded
        verb = {"Include": "includes", "Import": "imports", "FromImport": "imports", "Extends": "extends"}[
            type(node).__name__
        ]
        target = node.template  # type: ignore[attr-defined]
        if isinstance(target, nodes.Const) and isinstance(target.value, str):
            names = [target.value]
        elif isinstance(target, (nodes.List, nodes.Tuple)) and all(
            isinstance(item, nodes.Const) and isinstance(item.value, str) for item in target.items
        ):
            names = [item.value for item in target.items]  # type: ignore[attr-defined]
        else:
            return [
                loaded.problem(
                    path,
                    f"{where} line {node.lineno}: {verb} a name computed when rendering; write the file "
                    "name in quotes so that it can be checked",
                )
            ]
        problems: list[Problem] = []
        outside = [name for name in names if outside_root(name)]
        for name in outside:
            problems.append(
                loaded.problem(
                    path, f"{where} line {node.lineno}: {verb} {name!r}, outside the template root"
                )
            )
        present = [name for name in names if name not in outside and self.templates.exists(name)]
        if not present and not outside and not getattr(node, "ignore_missing", False):
            shown = " or ".join(repr(n) for n in names)
            problems.append(
                loaded.problem(
                    path,
                    f"{where} line {node.lineno}: {verb} {shown}, which is not found under the template root",
                )
            )
        for name in present:
            if name in seen:
                continue
            inner = f"template {name!r} ({verb.removesuffix('s')}d by {where.removeprefix('template ')})"
            problems.extend(self.check(path, self.templates.source(name), inner, seen | {name}))
        return problems


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


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
            for _line, root, name in _root_reads(tree, roots):
                reads[root].add(name)
    return reads


def _root_reads(tree: nodes.Template, roots: set[str]) -> Iterator[tuple[int, str, str]]:
    """``(line, root, name)`` for every ``root.name`` and ``root["name"]`` in a parsed template."""
    for node in tree.find_all(nodes.Getattr):
        if isinstance(node.node, nodes.Name) and node.node.name in roots:
            yield node.lineno, node.node.name, node.attr
    for item in tree.find_all(nodes.Getitem):
        if (
            isinstance(item.node, nodes.Name)
            and item.node.name in roots
            and isinstance(item.arg, nodes.Const)
            and isinstance(item.arg.value, str)
        ):
            yield item.lineno, item.node.name, item.arg.value


def template_reads(
    loaded: LoadedJourney, templates: TemplateSource, roots: set[str] | None = None
) -> list[tuple[Path_, str, int, str, str]]:
    """Every ``<root>.<name>`` read of the journey's templates (and of the files they include, import or
    extend) for the ``roots`` (default: ``customer``, ``entry`` and the ids of ``wait_for`` steps): (where
    in the journey, which template, line, root, name). Templates that cannot be read are skipped:
    ``check_templates`` reports them."""
    roots = roots if roots is not None else {"customer"} | instance_roots(loaded.journey)
    env = _environment(templates)
    out: list[tuple[Path_, str, int, str, str]] = []

    def visit(path: Path_, source: str, where: str, seen: frozenset[str]) -> None:
        try:
            tree = env.parse(source)
        except jinja2.TemplateSyntaxError:
            return
        out.extend((path, where, line, root, name) for line, root, name in _root_reads(tree, roots))
        for target in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
            template = target.template  # type: ignore[attr-defined]
            items = template.items if isinstance(template, (nodes.List, nodes.Tuple)) else [template]
            for const in items:
                name = const.value if isinstance(const, nodes.Const) else None
                if (
                    isinstance(name, str)
                    and name not in seen
                    and not outside_root(name)
                    and templates.exists(name)
                ):
                    visit(path, templates.source(name), f"template {name!r}", seen | {name})

    for i, step in enumerate(loaded.journey.steps):
        send = step.send
        if send is None:
            continue
        base: Path_ = ("steps", i, "send")
        for key, name in (("template", send.template), ("html", send.html)):
            if name is not None and not outside_root(name) and templates.exists(name):
                visit((*base, key), templates.source(name), f"template {name!r}", frozenset({name}))
        for key, text in (("subject", send.subject), ("title", send.title), ("link", send.link)):
            if text is not None:
                visit((*base, key), text, "the inline template", frozenset())
    return out
