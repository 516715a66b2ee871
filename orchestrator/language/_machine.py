"""A journey version's state machine: the source of the transition table the engine steps with, and of
the journey's diagram.

The machine is a ``transitions`` ``GraphMachine`` with no model bound to it (the engine never binds a
customer to it): its states are the step ids plus the terminal states, each labelled with what the step
does, and its transitions carry the trigger the engine fires (``next``, ``yes``, ``no``, ``split-<n>``,
``goal``) and a label a reader understands (``after 3d``, ``purchase came``, ``no purchase within 2d``).
``transition_table`` reads it once into the integer table the engine moves whole arrays of instances
with; ``draw`` writes it as Mermaid or Graphviz (DOT) text, or as an SVG image laid out here
(``language._svg``), with no system binary involved, and with counts (``DiagramCounts``) on the states and
the transitions when it is given them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar, Literal

import numpy as np
from transitions import State
from transitions.extensions.diagrams import GraphMachine
from transitions.extensions.diagrams_mermaid import Graph as MermaidGraph

from orchestrator.durations import format_duration
from orchestrator.language._models import Journey, Step, WaitUntil
from orchestrator.language._svg import render_svg

#: How a diagram is written: Mermaid (``stateDiagram-v2``), Graphviz's DOT language, or an SVG image.
DiagramFormat = Literal["mermaid", "dot", "svg"]
DIAGRAM_FORMATS: tuple[DiagramFormat, ...] = ("mermaid", "dot", "svg")
#: The node style of the terminal states in a diagram.
TERMINAL_STYLE = "terminal"
#: A table cell with no transition.
NO_STATE = -1


@dataclass(frozen=True)
class DiagramCounts:
    """Numbers a diagram writes on a journey: ``nodes`` maps a state's name (a step id, ``completed``,
    ``exited``, ``converted``) to the instances that reached it, ``edges`` maps (source state, trigger)
    (``next``, ``yes``, ``no``, ``split-<n>``, ``goal``) to the times that transition was taken. A state or
    a transition missing from the mappings is drawn without a number; a zero is written as 0."""

    nodes: Mapping[str, int] = field(default_factory=dict)
    edges: Mapping[tuple[str, str], int] = field(default_factory=dict)


class StepState(State):
    """A machine state with the label a diagram shows for it."""

    def __init__(self, *args: Any, label: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.label = label if label is not None else self.name


class JourneyMachine(GraphMachine):
    """The machine of one journey version (see the module docstring)."""

    state_cls = StepState
    # Steps drawn as transitions draws states; terminal states filled grey (and doubly framed in DOT).
    style_attributes: ClassVar[dict[str, Any]] = {  # type: ignore[misc]
        "node": {
            "default": GraphMachine.style_attributes["node"]["default"],  # type: ignore[index]
            TERMINAL_STYLE: {"fillcolor": "lightgrey", "color": "black", "peripheries": "2"},
        },
        "edge": GraphMachine.style_attributes["edge"],
        "graph": GraphMachine.style_attributes["graph"],
    }


def build_machine(
    journey: Journey, states: Sequence[str], targets: Mapping[str, Mapping[str, str]]
) -> JourneyMachine:
    """The machine of ``journey``: ``states`` (its step ids, then the terminal states) and, per step,
    trigger -> destination state (``targets``), each transition labelled for a reader."""
    steps = dict(zip(journey.step_ids(), journey.steps, strict=True))
    return JourneyMachine(
        model=None,
        states=[{"name": s, "label": _state_label(s, steps.get(s))} for s in states],
        initial=states[0],
        auto_transitions=False,
        title=f"{journey.id} version {journey.version}",
        graph_engine="mermaid",
        transitions=[
            {"trigger": t, "source": sid, "dest": dest, "label": _edge_label(steps[sid], t, journey)}
            for sid, by_trigger in targets.items()
            for t, dest in by_trigger.items()
        ],
    )


def transition_table(machine: GraphMachine, states: Sequence[str], triggers: Sequence[str]) -> np.ndarray:
    """``table[state code, trigger code] -> state code`` read from the machine's transitions, ``-1`` where a
    state has no transition for a trigger (``NO_STATE``; int16: a journey has far fewer states)."""
    table = np.full((len(states), len(triggers)), NO_STATE, dtype=np.int16)
    for trigger_index, trigger in enumerate(triggers):
        event = machine.events.get(trigger)
        if event is None:
            continue
        for source, transitions in event.transitions.items():
            dest = transitions[0].dest
            assert dest is not None, "every journey transition has a destination"
            table[states.index(source), trigger_index] = states.index(dest)
    return table


def draw(
    machine: GraphMachine,
    terminal: Sequence[str],
    format: DiagramFormat = "mermaid",
    counts: DiagramCounts | None = None,
) -> str:
    """The machine as a diagram: Mermaid (``stateDiagram-v2``) or Graphviz DOT source, or an SVG image, the
    terminal states styled apart, and ``counts`` written after the labels they belong to
    (``offer (send email) · 1,204``, ``after 3d · 980``). Mermaid and DOT are written by ``transitions``; DOT
    through the ``graphviz`` package, which only builds the text here (nothing is rendered, so the ``dot``
    program is not needed). The SVG is laid out and written by ``language._svg``."""
    if format == "svg":
        return render_svg(
            machine.title,
            [(s.name, _label_of(s)) for s in machine.states.values()],
            _transitions(machine),
            terminal,
            counts.nodes if counts is not None else None,
            counts.edges if counts is not None else None,
        )
    if counts is not None:
        machine = _with_counts(machine, counts)
    graph: Any
    if format == "dot":
        from transitions.extensions.diagrams_graphviz import Graph as DotGraph

        graph = DotGraph(machine)  # type: ignore[arg-type]
        title = machine.title
    else:
        graph = _SafeMermaidGraph(machine)  # type: ignore[arg-type]
        title = f"title: {machine.title}"  # Mermaid reads the title from YAML front matter
    for state in terminal:
        graph.set_node_style(state, TERMINAL_STYLE)
    source: str = graph.get_graph(title=title).source
    return "".join(line.rstrip() + "\n" for line in source.splitlines())


def _transitions(machine: GraphMachine) -> list[tuple[str, str, str, str]]:
    """(source, trigger, destination, label) of each transition, by source state then trigger."""
    found = [
        (source, trigger, str(t.dest), str(getattr(t, "label", trigger)))
        for trigger, event in machine.events.items()
        for source, ts in event.transitions.items()
        for t in ts
    ]
    order = {name: i for i, name in enumerate(machine.states)}
    triggers = {name: i for i, name in enumerate(machine.events)}
    return sorted(found, key=lambda t: (order[t[0]], t[1] == "goal", triggers[t[1]]))


def _label_of(state: State) -> str:
    return state.label if isinstance(state, StepState) else state.name


def with_count(label: str, count: int | None) -> str:
    """``label`` with ``count`` after a middle dot (``after 3d · 980``), or alone when there is none."""
    return label if count is None else f"{label} · {count:,}"


def _with_counts(machine: GraphMachine, counts: DiagramCounts) -> JourneyMachine:
    """A copy of ``machine`` whose state and transition labels carry ``counts``."""
    return JourneyMachine(
        model=None,
        states=[
            {"name": s.name, "label": with_count(_label_of(s), counts.nodes.get(s.name))}
            for s in machine.states.values()
        ],
        initial=machine.initial,
        auto_transitions=False,
        title=machine.title,
        graph_engine="mermaid",
        transitions=[
            {"trigger": t, "source": s, "dest": d, "label": with_count(label, counts.edges.get((s, t)))}
            for s, t, d, label in _transitions(machine)
        ],
    )


class _SafeMermaidGraph(MermaidGraph):
    """transitions' Mermaid graph with ids Mermaid accepts (transitions issue 708): a state is written as
    ``state "step-2 (wait 3d)" as s1`` and referred to as ``s1``, since Mermaid ids cannot hold the dash
    of ``step-2``; and ``:`` and ``;``, which end a Mermaid label, are replaced in the labels."""

    def _get_elements(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        states, transitions = super()._get_elements()
        ids = self._ids()
        states = [
            {**s, "name": ids[s["name"]], "label": _mermaid_text(s.get("label", s["name"]))} for s in states
        ]
        transitions = [
            {
                **t,
                "source": ids[t["source"]],
                "dest": ids[t.get("dest", t["source"])],
                "label": _mermaid_text(t.get("label", t["trigger"])),
            }
            for t in transitions
        ]
        return states, transitions

    def set_node_style(self, state: Any, style: str) -> None:
        super().set_node_style(self._ids().get(state, state), style)

    def get_graph(self, title: str | None = None, roi_state: str | None = None) -> Any:
        graph = super().get_graph(title, roi_state)
        initial = self.machine.initial
        start = f"[*] --> {initial}"
        lines = graph.source.split("\n")
        if initial and lines and lines[-1].strip() == start:  # written with the state's name: use its id
            lines[-1] = lines[-1].replace(start, f"[*] --> {self._ids()[initial]}")
            graph.source = "\n".join(lines)
        return graph

    def _ids(self) -> dict[str, str]:
        return {name: f"s{i}" for i, name in enumerate(self.machine.states)}


def _mermaid_text(text: str) -> str:
    """``text`` as a Mermaid label: ``:`` (a time of day) written as the look-alike ratio sign, ``;`` as a
    comma, ``"`` as ``'``, and on one line."""
    return " ".join(text.replace(":", "\u2236").replace(";", ",").replace('"', "'").split())


# ---------------------------------------------------------------------------------------------- labels


def _state_label(state: str, step: Step | None) -> str:
    """``offer (send email)``, ``step-2 (wait 3d)``; a terminal state is its name."""
    if step is None:
        return state
    return f"{state} ({step_words(step)})"


def step_words(step: Step) -> str:
    """What a step does, in a few words: ``send email``, ``wait 3d``, ``wait for purchase``, ``wait until
    09:00 on the anniversary of birthday``. The diagram's labels, the funnel's and ``why``'s."""
    if step.send is not None:
        if step.send.best_of:
            return f"send on the best of {', '.join(step.send.best_of)}"
        if step.send.at is not None:
            within = format_duration(step.send.best_time_window)
            return f"send {step.send.channel} at the best time within {within}"
        return f"send {step.send.channel}"
    if step.wait is not None:
        return f"wait {format_duration(step.wait)}"
    if step.wait_for is not None:
        return f"wait for {step.wait_for.event}"
    if step.wait_until is not None:
        return f"wait until {until_words(step.wait_until)}"
    return step.kind.replace("_", " ")


def until_words(until: WaitUntil) -> str:
    """When a ``wait_until`` ends, in words: ``10:00``, ``renewal_at``, ``09:00 on birthday``, ``09:00 on
    the anniversary of birthday``, ``00:00, 7 days before the day of renewal_at each month``."""
    if until.attribute is None:
        assert until.time is not None
        return until.time
    if until.time is None and until.every is None:
        return until.attribute
    day = until.attribute if until.every is None else f"the anniversary of {until.attribute}"
    if until.every == "month":
        day = f"the day of {until.attribute} each month"
    days = until.offset // timedelta(days=1)
    time = until.time or "00:00"
    if not days:
        return f"{time} on {day}"
    return f"{time}, {abs(days)} day{'s' if abs(days) != 1 else ''} {'before' if days < 0 else 'after'} {day}"


def transition_words(step: Step, trigger: str, journey: Journey) -> str:
    """Why an instance took this transition, in words: the edge's label, with a branch's condition written
    out (``since(purchase) < 4h held`` rather than ``yes``). What ``why`` says of an exit."""
    branch = step.branch
    if branch is not None and branch.condition is not None and trigger in ("yes", "no"):
        return f"{branch.condition} {'held' if trigger == 'yes' else 'did not hold'}"
    return _edge_label(step, trigger, journey)


def _edge_label(step: Step, trigger: str, journey: Journey) -> str:
    """What makes an instance take this transition, in a few words."""
    if trigger == "goal":
        goal = journey.goal
        if goal is None:
            return "goal"
        # The default window (from entry) is left unsaid, as it always was; one from the first send is not.
        return f"goal {goal.what}" + (f" {goal.window_words}" if goal.start == "first_send" else "")
    if step.split is not None:
        arm = int(trigger.rsplit("-", 1)[1])
        return f"arm {arm + 1} ({list(step.split.values())[arm]:g}%)"
    if step.wait_for is not None:
        w = step.wait_for
        return f"{w.event} came" if trigger == "yes" else f"no {w.event} within {format_duration(w.timeout)}"
    if step.branch is not None:
        b = step.branch
        if b.event is None:
            return trigger  # yes / no: the condition holds or not
        return f"{b.event} seen" if trigger == "yes" else f"no {b.event}"
    if step.wait is not None:
        return f"after {format_duration(step.wait)}"
    if step.wait_until is not None:
        until = step.wait_until
        return f"no {until.attribute}" if trigger == "no" else f"at {until_words(until)}"
    if step.exit is not None:
        return "exit"
    return trigger  # a send: next
