"""A journey version's state machine: the source of the transition table the engine steps with, and of
the journey's diagram.

The machine is a ``transitions`` ``GraphMachine`` with no model bound to it (the engine never binds a
customer to it): its states are the step ids plus the terminal states, each labelled with what the step
does, and its transitions carry the trigger the engine fires (``next``, ``yes``, ``no``, ``split-<n>``,
``goal``) and a label a reader understands (``after 3d``, ``purchase came``, ``no purchase within 2d``).
``transition_table`` reads it once into the integer table the engine moves whole arrays of instances
with; ``draw`` writes it as Mermaid or Graphviz (DOT) text, with no system binary involved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from transitions import State
from transitions.extensions.diagrams import GraphMachine
from transitions.extensions.diagrams_mermaid import Graph as MermaidGraph

from orchestrator.durations import format_duration
from orchestrator.language._models import Journey, Step

#: How a diagram is written: Mermaid (``stateDiagram-v2``) or Graphviz's DOT language.
DiagramFormat = Literal["mermaid", "dot"]
DIAGRAM_FORMATS: tuple[DiagramFormat, ...] = ("mermaid", "dot")
#: The node style of the terminal states in a diagram.
TERMINAL_STYLE = "terminal"
#: A table cell with no transition.
NO_STATE = -1


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


def draw(machine: GraphMachine, terminal: Sequence[str], format: DiagramFormat = "mermaid") -> str:
    """The machine as diagram text: Mermaid (``stateDiagram-v2``) or Graphviz DOT source, the terminal
    states styled apart. Both are written by ``transitions``; DOT through the ``graphviz`` package, which
    only builds the text here (nothing is rendered, so the ``dot`` program is not needed)."""
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
    kind = step.kind
    if step.send is not None:
        what = f"send {step.send.channel}"
    elif step.wait is not None:
        what = f"wait {format_duration(step.wait)}"
    elif step.wait_for is not None:
        what = f"wait for {step.wait_for.event}"
    elif step.wait_until is not None:
        until = step.wait_until
        what = f"wait until {until.time}" if until.time is not None else f"wait until {until.attribute}"
    else:
        what = kind.replace("_", " ")
    return f"{state} ({what})"


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
        return f"goal {journey.goal.event}" if journey.goal is not None else "goal"
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
        if until.time is not None:
            return f"at {until.time}"
        return f"no {until.attribute}" if trigger == "no" else f"at {until.attribute}"
    if step.exit is not None:
        return "exit"
    return trigger  # a send: next
