"""A journey's diagram is drawn from its state machine: the same transitions as the table the engine steps
with, labelled for a reader, as Mermaid or Graphviz DOT text; and the command line writes it."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.language import load_journey_text
from orchestrator.language._journey_file import compile_loaded
from orchestrator.language._plan import NO_STATE, JourneyPlan

JOURNEY = """\
id: feedback
version: 2
signal: count(purchase, within=1d) > 0
holdout: 0
steps:
  - id: ask
    send:
      channel: email
      subject: How was it?
      template: ask.txt
  - id: answered
    wait_for:
      event: survey_answer
      timeout: 2d
      else: remind
  - id: happy
    branch:
      if: since(purchase) < 30d
      then: thanks
      else: exit
  - id: remind
    send:
      channel: sms
      template: remind.txt
  - wait: 1d
  - exit
  - id: thanks
    send:
      channel: email
      subject: Thank you
      template: thanks.txt
goal:
  event: review
  within: 14d
"""

Edge = tuple[str, str, str]


def _plan() -> JourneyPlan:
    return compile_loaded(load_journey_text(JOURNEY, "feedback.yaml"))


def _table_edges(plan: JourneyPlan) -> Counter[Edge]:
    """(source, destination, label) of every cell of the transition table; each label read from the
    machine's transition for that cell."""
    out: Counter[Edge] = Counter()
    for code, source in enumerate(plan.states):
        for trigger_code, trigger in enumerate(plan.triggers):
            dest = int(plan.table[code, trigger_code])
            if dest != NO_STATE:
                label = plan.machine.events[trigger].transitions[source][0].label
                out[(source, plan.states[dest], label)] += 1
    return out


def _mermaid_edges(text: str) -> tuple[Counter[Edge], str]:
    """The edges of a Mermaid state diagram (with state names read back from their labels) and the state
    the diagram starts at."""
    names = {
        alias: label.split(" (")[0]
        for label, alias in re.findall(r'^\s*state "([^"]*)" as (\S+)$', text, re.M)
    }
    edges: Counter[Edge] = Counter()
    for source, dest, labels in re.findall(r"^\s*(s\d+) --> (s\d+): (.*)$", text, re.M):
        for label in labels.split(" | "):
            edges[(names[source], names[dest], label)] += 1
    (start,) = re.findall(r"^\s*\[\*\] --> (\S+)$", text, re.M)
    return edges, names[start]


def test_the_mermaid_diagram_has_exactly_the_transitions_of_the_table() -> None:
    plan = _plan()
    text = plan.diagram("mermaid")
    assert text.splitlines()[:4] == ["---", "title: feedback version 2", "---", "stateDiagram-v2"]
    edges, start = _mermaid_edges(text)
    assert edges == _table_edges(plan)
    assert start == "ask"
    # Every step and terminal state is drawn; each transition is labelled for a reader.
    assert set(re.findall(r'state "([^" ]*)', text)) == set(plan.states)
    assert ("answered", "happy", "survey_answer came") in edges
    assert ("answered", "remind", "no survey_answer within 2d") in edges
    assert ("happy", "thanks", "yes") in edges and ("happy", "exited", "no") in edges
    assert ("step-5", "step-6", "after 1d") in edges
    assert ("step-6", "exited", "exit") in edges
    assert ("thanks", "completed", "next") in edges
    assert edges[("ask", "converted", "goal review")] == 1
    assert sum(1 for s, d, _ in edges if d == "converted") == len(plan.steps)


def test_terminal_states_are_styled_apart_and_ids_are_valid_mermaid() -> None:
    text = _plan().diagram()
    classes = dict(re.findall(r"^\s*Class (\S+) s_(\S+)$", text, re.M))
    names = {alias: label for label, alias in re.findall(r'^\s*state "([^"]*)" as (\S+)$', text, re.M)}
    assert {names[a] for a, style in classes.items() if style == "terminal"} == {
        "completed",
        "exited",
        "converted",
    }
    # "step-5" is not a valid Mermaid id: every id is a plain word.
    assert all(re.fullmatch(r"s\d+", alias) for alias in names)


def test_the_dot_diagram_has_the_same_edges() -> None:
    plan = _plan()
    text = plan.diagram("dot")
    assert text.startswith('digraph "feedback version 2" {')
    edges: Counter[Edge] = Counter()
    for source, dest, labels in re.findall(
        r'^\t("?[\w-]+"?) -> ("?[\w-]+"?) \[label=("[^"]*"|\S+?)\]', text, re.M
    ):
        for label in labels.strip('"').split(" | "):
            edges[(source.strip('"'), dest.strip('"'), label)] += 1
    assert edges == _table_edges(plan)


def test_the_command_line_writes_the_diagram(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "journeys"
    (folder / "templates").mkdir(parents=True)
    for name in ("ask.txt", "remind.txt", "thanks.txt"):
        (folder / "templates" / name).write_text("hello\n")
    journey = folder / "feedback.yaml"
    journey.write_text(JOURNEY)
    expected = _plan().diagram("mermaid")

    out = tmp_path / "feedback.mmd"
    assert main(["diagram", str(journey), "-o", str(out)]) == 0
    assert out.read_text() == expected
    assert main(["diagram", "feedback", "--journeys", str(folder), "--format", "dot"]) == 0
    assert capsys.readouterr().out == _plan().diagram("dot")
    assert main(["diagram", "nobody", "--journeys", str(folder)]) == 2
    assert "no journey 'nobody'" in capsys.readouterr().err


SPLIT = """\
id: offers
version: 1
signal: count(purchase, within=1d) > 0
holdout: 0
steps:
  - wait_until: {time: "10:00"}
  - split: {a: 30, b: 70}
  - id: a
    send: {channel: sms, template: a.txt}
  - id: b
    send: {channel: sms, template: b.txt}
"""


def test_splits_and_times_of_day_are_labelled_and_match_the_table() -> None:
    plan = compile_loaded(load_journey_text(SPLIT, "offers.yaml"))
    edges, start = _mermaid_edges(plan.diagram())
    # A time of day keeps its look in Mermaid, where a colon would end the label.
    in_mermaid = Counter(
        {(s, d, label.replace(":", "\u2236")): n for (s, d, label), n in _table_edges(plan).items()}
    )
    assert edges == in_mermaid
    assert start == "step-1"
    assert ("step-1", "step-2", "at 10\u223600") in edges
    assert ("step-2", "a", "arm 1 (30%)") in edges and ("step-2", "b", "arm 2 (70%)") in edges
    assert ("a", "b", "next") in edges and ("b", "completed", "next") in edges
