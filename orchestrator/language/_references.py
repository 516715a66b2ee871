"""The names a journey reads that live outside it: events, their properties and customer attributes.

``journey_references`` walks a loaded journey (its expressions, parsed into trees, and its event steps) and
lists every such name with where it is written, so that a name no event will ever carry, or a misspelled
metric, is an error at its ``file:line:column`` rather than a journey that silently never fires.

The rule for a bare name in an expression (``browse_change >= 1``): a metric of the journey or a shared
metric, else a customer attribute. A bare name that is neither a metric nor a known attribute (built in,
declared in the tracking plan, or, for ``validate --db``, seen in the store) and is within a typo of a
metric is an error: "unknown name 'browse_chnage'; did you mean the metric 'browse_change'?". Otherwise
it is read as a customer attribute, which is how custom attributes work; against a tracking plan that
declares ``attributes:`` or a store that has customers, an attribute it does not know is an error too.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from orchestrator.language._journey_file import LoadedJourney
from orchestrator.language._plan import ENTRY, instance_roots
from orchestrator.language._policy_file import ContactPolicy
from orchestrator.language._shared_metrics import SharedMetrics
from orchestrator.language._tracking_plan import ENGINE_EVENTS, EventCatalog
from orchestrator.language._yamlio import Path_, Problem, SpecError, load_yaml, read_text
from orchestrator.signals import _lang as lang

#: Attributes every customer row has (the columns of ``customers``); they never need declaring.
BUILTIN_ATTRIBUTES = frozenset(
    {"id", "email", "phone", "push_token", "timezone", "consent_email", "consent_sms", "consent_push"}
)

Kind = Literal["event", "property", "attribute"]


@dataclass(frozen=True)
class Reference:
    """One name read from outside the journey: an ``event``, a ``property`` of ``event`` (None when the
    event is not known, e.g. ``entry.x`` in a journey entered by a signal) or an ``attribute``."""

    kind: Kind
    name: str
    path: Path_
    offset: int | None = None
    key: bool = False  # the location is the key (``match:`` properties), not the value
    event: str | None = None
    any_event: bool = False  # a property read on events of any type (``sessions(by=session_id)``)


def _expression(path: Path_, text: str | None, roots: Mapping[str, str | None]) -> list[Reference]:
    """The events, properties and attributes an expression reads (``roots``: instance roots -> their
    event, for ``entry.x`` and ``<wait_for id>.x`` in branch conditions)."""
    if text is None:
        return []
    try:
        node = lang.parse(text)
    except lang.ExpressionError:
        return []  # reported by the loader
    refs: list[Reference] = []
    for call in lang.aggregates(node):
        events = lang.FUNCTIONS[call.func].kind == "events"
        for arg in call.args:
            if not isinstance(arg, lang.Name):
                continue
            refs.append(Reference("event", arg.parts[0], path, arg.pos))
            if not events and len(arg.parts) == 2:
                refs.append(Reference("property", arg.parts[1], path, arg.pos, event=arg.parts[0]))
        for name in lang.kwarg_events(call):  # not_followed_by=purchase, without=[a, b]
            refs.append(Reference("event", name.parts[0], path, name.pos))
        by = call.kwarg("by")
        if isinstance(by, lang.Name) and len(by.parts) == 2:
            refs.append(Reference("property", by.parts[1], path, by.pos, event=by.parts[0]))
        for name in lang.where_properties(call):  # where=purchase.category == ...
            refs.append(Reference("property", name.parts[1], path, name.pos, event=name.parts[0]))
        if call.func == "sessions":
            prop = lang.group_property(call) or lang.SESSION_PROPERTY
            refs.append(Reference("property", prop, path, by.pos if by else call.pos, any_event=True))
    for name in lang.free_names(node):
        if len(name.parts) == 1:
            refs.append(Reference("attribute", name.parts[0], path, name.pos))
        elif len(name.parts) == 2 and name.parts[0] in roots:
            event = roots[name.parts[0]]
            refs.append(Reference("property", name.parts[1], path, name.pos, event=event))
    return refs


def _match(
    path: Path_, event: str | None, match: dict[str, Any] | None, entry_event: str | None
) -> list[Reference]:
    refs: list[Reference] = []
    for prop, value in (match or {}).items():
        refs.append(Reference("property", prop, (*path, prop), key=True, event=event))
        if isinstance(value, str) and value.startswith(ENTRY + ".") and entry_event is not None:
            refs.append(Reference("property", value[len(ENTRY) + 1 :], (*path, prop), event=entry_event))
    return refs


def journey_references(loaded: LoadedJourney) -> list[Reference]:
    """Every event, event property and customer attribute the journey reads, with its place."""
    j = loaded.journey
    entry = j.effective_entry
    base: Path_ = ("entry",) if j.entry is not None else ()
    entry_event = entry.event
    roots: dict[str, str | None] = {
        s.id: s.wait_for.event for s in j.steps if s.wait_for is not None and s.id
    }
    if entry_event is not None:
        roots[ENTRY] = entry_event
    assert set(roots) == instance_roots(j)
    refs: list[Reference] = []
    for name, text in j.metrics.items():
        refs += _expression(("metrics", name), text, {})
    refs += _expression((*base, "signal"), entry.signal, {})
    refs += _expression((*base, "segment"), entry.segment, {})
    refs += _expression(("exit_when",), j.exit_when, {})
    if entry_event is not None:
        refs.append(Reference("event", entry_event, ("entry", "event")))
        if entry.key is not None:
            refs.append(Reference("property", entry.key, ("entry", "key"), event=entry_event))
    for i, step in enumerate(j.steps):
        here: Path_ = ("steps", i)
        if step.branch is not None:
            b = step.branch
            refs += _expression((*here, "branch", "if"), b.condition, roots)
            if b.event is not None:
                refs.append(Reference("event", b.event, (*here, "branch", "event")))
                refs += _match((*here, "branch", "match"), b.event, b.match, entry_event)
        elif step.wait_for is not None:
            w = step.wait_for
            refs.append(Reference("event", w.event, (*here, "wait_for", "event")))
            refs += _match((*here, "wait_for", "match"), w.event, w.match, entry_event)
        elif step.wait_until is not None and step.wait_until.attribute is not None:
            refs.append(Reference("attribute", step.wait_until.attribute, (*here, "wait_until", "attribute")))
    if j.goal is not None:
        g = j.goal
        refs += _expression(("goal", "signal"), g.signal, {})
        if g.event is not None:
            refs.append(Reference("event", g.event, ("goal", "event")))
            if g.revenue is not None:
                refs.append(Reference("property", g.revenue, ("goal", "revenue"), event=g.event))
            refs += _match(("goal", "match"), g.event, g.match, entry_event)
    return refs


# ---------------------------------------------------------------------------------------------- checks


def distance(a: str, b: str) -> int:
    """Edits (insert, delete, replace, swap two neighbours) between two names: optimal string alignment."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i]
        for k, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            value = min(previous[k] + 1, row[k - 1] + 1, previous[k - 1] + cost)
            if i > 1 and k > 1 and ca == b[k - 2] and a[i - 2] == cb:
                value = min(value, previous2[k - 2] + 1)
            row.append(value)
        previous2, previous = previous, row
    return previous[-1]


def typo_of(name: str, choices: Iterable[str]) -> str | None:
    """The choice ``name`` is most likely a typo of: one edit away (two for names of six letters or
    more), else None."""
    best: tuple[int, str] | None = None
    for choice in sorted(set(choices)):
        if choice == name:
            return None
        allowed = 2 if min(len(name), len(choice)) >= 6 else 1
        d = distance(name, choice)
        if d <= allowed and (best is None or d < best[0]):
            best = (d, choice)
    return best[1] if best else None


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(set(choices)), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _problem(loaded: LoadedJourney, ref: Reference, message: str) -> Problem:
    return loaded.problem(ref.path, message, ref.offset, key=ref.key)


def metric_typos(
    loaded: LoadedJourney, metrics: Iterable[str], attributes: Iterable[str] = ()
) -> list[Problem]:
    """Bare names that are no metric and no known attribute, but one typo away from a metric (checked at
    every load: they need no store and no tracking plan)."""
    metrics = set(metrics) | set(loaded.journey.metrics)
    known = BUILTIN_ATTRIBUTES | set(attributes)
    problems: list[Problem] = []
    for ref in journey_references(loaded):
        if ref.kind != "attribute" or ref.name in metrics or ref.name in known:
            continue
        close = typo_of(ref.name, metrics)
        if close is not None:
            problems.append(
                _problem(
                    loaded,
                    ref,
                    f"unknown name {ref.name!r}; did you mean the metric {close!r}? (a customer attribute "
                    "of this name must be listed under attributes: in events.yaml)",
                )
            )
    return problems


def shared_metric_typos(shared: SharedMetrics, attributes: Iterable[str] = ()) -> list[Problem]:
    """``metric_typos`` for the shared metrics file's own expressions (reported in that file)."""
    known = BUILTIN_ATTRIBUTES | set(attributes)
    problems: list[Problem] = []
    for metric, node in shared.metrics.items():
        for name in lang.free_names(node):
            word = name.parts[0]
            if len(name.parts) != 1 or word in shared.metrics or word in known:
                continue
            close = typo_of(word, shared.metrics)
            if close is None:
                continue
            loc = shared.locations.of(("metrics", metric))
            column = loc.column
            if loc.single_line:
                column += name.pos + (1 if loc.style in ("'", '"') else 0)
            message = (
                f"unknown name {word!r}; did you mean the metric {close!r}? (a customer attribute of this "
                "name must be listed under attributes: in events.yaml)"
            )
            problems.append(Problem(shared.file, loc.line, column, message))
    return problems


@dataclass(frozen=True)
class KnownNames:
    """What exists outside the journeys, from one source (``where``: "events.yaml" or "the store").

    ``None`` for a kind means that source does not say (no ``attributes:`` in the plan, an empty store):
    that kind is then not checked against it. ``properties`` lists what is known per event; an event
    missing from it is not checked for properties.
    """

    where: str
    events: frozenset[str] | None = None
    properties: Mapping[str, frozenset[str]] = field(default_factory=dict)
    attributes: frozenset[str] | None = None
    # Names another source vouches for (the tracking plan, when checking against the store).
    also_events: frozenset[str] = frozenset()
    also_properties: Mapping[str, frozenset[str]] = field(default_factory=dict)
    also_attributes: frozenset[str] = frozenset()
    # Said after a name with no close suggestion (e.g. how to declare a name that is yet to come).
    otherwise: str = ""


def catalog_names(catalog: EventCatalog | None) -> KnownNames:
    """What a tracking plan knows (nothing, without one)."""
    if catalog is None:
        return KnownNames("no tracking plan")
    return KnownNames(catalog.file, frozenset(catalog.events), catalog.events, catalog.attributes)


def unknown_names(loaded: LoadedJourney, metrics: Iterable[str], known: KnownNames) -> list[Problem]:
    """Events, properties and attributes the journey reads that ``known`` does not know, each with a
    did-you-mean where one is close."""
    metrics = set(metrics) | set(loaded.journey.metrics)
    problems: list[Problem] = []
    reported: set[tuple[str, str, str | None, Path_]] = set()
    for ref in journey_references(loaded):
        marker = (ref.kind, ref.name, ref.event, ref.path)
        if marker in reported:
            continue
        message = _unknown(ref, metrics, known)
        if message is not None:
            reported.add(marker)
            problems.append(_problem(loaded, ref, message))
    return problems


def _unknown(ref: Reference, metrics: set[str], known: KnownNames) -> str | None:
    if ref.kind == "event":
        if ref.name in ENGINE_EVENTS:
            return None
        if known.events is None or ref.name in known.events or ref.name in known.also_events:
            return None
        hint = _suggest(ref.name, [*known.events, *ENGINE_EVENTS]) or known.otherwise
        return f"unknown event {ref.name!r}: not in {known.where}{hint}"
    if ref.kind == "property" and ref.event in ENGINE_EVENTS:
        have = ENGINE_EVENTS[ref.event]
        if ref.name in have:
            return None
        listing = ", ".join(sorted(have))
        return (
            f"unknown property {ref.name!r} of event {ref.event!r}: the engine records {listing}"
            f"{_suggest(ref.name, have)}"
        )
    if ref.kind == "property" and ref.any_event:
        if known.events is None or not known.properties:
            return None
        every = {p for have in (*known.properties.values(), *known.also_properties.values()) for p in have}
        if ref.name in every:
            return None
        hint = _suggest(ref.name, every) or known.otherwise
        return (
            f"unknown property {ref.name!r}: no event in {known.where} has it"
            f"{hint or '; list it under the properties of the events that carry it'}"
        )
    if ref.kind == "property":
        if ref.event is None or known.events is None or ref.event not in known.properties:
            return None
        have = known.properties[ref.event] | known.also_properties.get(ref.event, frozenset())
        if ref.name in have:
            return None
        return (
            f"unknown property {ref.name!r} of event {ref.event!r}: not in {known.where}"
            f"{_suggest(ref.name, have) or known.otherwise}"
        )
    if known.attributes is None or ref.name in metrics or ref.name in BUILTIN_ATTRIBUTES:
        return None
    if ref.name in known.attributes or ref.name in known.also_attributes:
        return None
    close = _suggest(ref.name, [*known.attributes, *metrics]) or known.otherwise
    return f"unknown name {ref.name!r}: no metric, and no customer attribute in {known.where}{close}"


#: What a template's ``customer`` has besides the attributes: the store's own key.
_TEMPLATE_CUSTOMER = frozenset({"key"})


def template_problems(
    loaded: LoadedJourney, reads: Iterable[tuple[Path_, str, int, str, str]], known: KnownNames
) -> list[Problem]:
    """``customer.x``, ``entry.x`` and ``<wait_for id>.x`` reads of the templates (``template_reads``) that
    ``known`` does not know, reported at the journey line that names the template."""
    j = loaded.journey
    events: dict[str, str | None] = {
        s.id: s.wait_for.event for s in j.steps if s.wait_for is not None and s.id
    }
    events[ENTRY] = j.effective_entry.event
    problems: list[Problem] = []
    for path, where, line, root, name in reads:
        if root == "customer":
            if (
                name in _TEMPLATE_CUSTOMER
                or _unknown(Reference("attribute", name, path), set(), known) is None
            ):
                continue
            hint = _suggest(name, known.attributes or ())
            message = f"customer.{name}: no customer attribute {name!r} in {known.where}{hint}"
        else:
            event = events.get(root)
            if _unknown(Reference("property", name, path, event=event), set(), known) is None:
                continue
            if event in ENGINE_EVENTS:
                have = ENGINE_EVENTS[event]
                source = f"(the engine records {', '.join(sorted(have))})"
            else:
                have = known.properties.get(event or "", frozenset())
                source = f"in {known.where}"
            hint = _suggest(name, have)
            message = f"{root}.{name}: event {event!r} has no property {name!r} {source}{hint}"
        problem = loaded.problem(path, f"{where} line {line}: {message}")
        if problem not in problems:
            problems.append(problem)
    return problems


def policy_problems(policy: ContactPolicy, catalog: EventCatalog | None) -> list[Problem]:
    """Attributes the policy's exclusions read that a tracking plan with ``attributes:`` does not list: an
    exclusion on a name no customer will have excludes nobody."""
    if catalog is None or catalog.attributes is None:
        return []
    try:
        _, locations = load_yaml(read_text(Path(policy.file)), policy.file)
    except SpecError:
        return []  # reported when the policy was loaded
    problems: list[Problem] = []
    for i, (_, node) in enumerate(policy.exclusions):
        loc = locations.of(("exclusions", i, "when"))
        for name in lang.free_names(node):
            word = name.parts[0]
            if word in BUILTIN_ATTRIBUTES or word in catalog.attributes:
                continue
            column = loc.column + (name.pos + (1 if loc.style in ("'", '"') else 0) if loc.single_line else 0)
            message = (
                f"exclusions[{i}].when: no customer attribute {word!r} in {catalog.file}"
                f"{_suggest(word, catalog.attributes)}"
            )
            problems.append(Problem(policy.file, loc.line, column, message))
    return problems


def route_problems(
    loaded: LoadedJourney, channels: Collection[str] | None, endpoints: Collection[str] | None
) -> list[Problem]:
    """Sends that the workspace config cannot deliver: a channel no provider is set up for (``channels``,
    None: every channel is routed) and a webhook endpoint the config does not name (``endpoints``, None:
    endpoints are not checked)."""
    problems = []
    for i, step in enumerate(loaded.journey.steps):
        send = step.send
        if send is None:
            continue
        unrouted = [c for c in send.channels if channels is not None and c not in channels]
        if channels is not None and unrouted:
            routed = ", ".join(sorted(channels)) or "none"
            problems.append(
                loaded.problem(
                    ("steps", i, "send", "channel"),
                    f"no provider is set up for channel {unrouted[0]!r} in the workspace config "
                    f"(channels: {routed})",
                )
            )
        elif send.channel == "webhook" and endpoints is not None and send.endpoint not in endpoints:
            named = ", ".join(sorted(endpoints)) or "none"
            problems.append(
                loaded.problem(
                    ("steps", i, "send", "endpoint"),
                    f"webhook endpoint {send.endpoint!r} is not named under webhooks: in the workspace "
                    f"config (named: {named}){_suggest(send.endpoint or '', endpoints)}",
                )
            )
    return problems


def unsubscribe_warnings(loaded: LoadedJourney, provider: str) -> list[Problem]:
    """A warning at each marketing email step of the journey, for a workspace whose email goes out through
    ``provider`` while its config has no ``unsubscribe`` section (``config.unsubscribe_missing``): those
    emails carry no ``List-Unsubscribe`` header nor ``links.unsubscribe``."""
    return [
        loaded.problem(
            ("steps", i, "send"),
            f"marketing email goes out through {provider} without unsubscribe links: add an unsubscribe: "
            "section to the workspace config (Gmail and Yahoo require one-click unsubscribe of bulk senders)",
        )
        for i, step in enumerate(loaded.journey.steps)
        if step.send is not None and step.send.channel == "email" and not step.send.transactional
    ]
