"""A journey's diagram as an SVG image: drawn from the same state machine as the Mermaid and DOT text, with
every state and transition labelled, counts where given, escaped text, no two texts overlapping, nothing
fetched; and it reads right in a browser, at a desktop's width and at a phone's (checked by OCR)."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from orchestrator.language import (
    DiagramCounts,
    JourneyPlan,
    compile_loaded,
    find_journey_files,
    load_journey,
    load_journey_text,
)
from orchestrator.language._svg import render_svg, text_width

ROOT = Path(__file__).resolve().parents[2]
SVG = "{http://www.w3.org/2000/svg}"
EXAMPLES = find_journey_files([ROOT / "examples" / "journeys", ROOT / "journeys"])


def _plan(path: Path) -> JourneyPlan:
    return compile_loaded(load_journey(path))


def _transitions(plan: JourneyPlan) -> list[tuple[str, str, str, str]]:
    """(source, trigger, destination, label) of every transition of the machine."""
    return [
        (source, trigger, ts[0].dest, ts[0].label)
        for trigger, event in plan.machine.events.items()
        for source, ts in event.transitions.items()
    ]


def _texts(svg: str) -> list[str]:
    """The SVG's texts in document order, each with its parts (tspans) joined."""
    root = ET.fromstring(svg)
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def _counts(plan: JourneyPlan) -> DiagramCounts:
    """Made-up, distinct counts for every state and transition (and one zero)."""
    nodes = {s: 5000 - 411 * i for i, s in enumerate(plan.states)}
    nodes[plan.states[-1]] = 0
    edges = {(s, t): 1000 + 7 * i for i, (s, t, _, _) in enumerate(_transitions(plan))}
    return DiagramCounts(nodes, edges)


def test_the_examples_list_is_what_the_test_expects() -> None:
    assert len(EXAMPLES) >= 12  # six examples, three tiers, three in journeys/
    assert all(p.suffix == ".yaml" for p in EXAMPLES)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_state_and_transition_of_each_example_is_drawn(path: Path) -> None:
    plan = _plan(path)
    for counts in (None, _counts(plan)):
        svg = plan.diagram("svg", counts)
        root = ET.fromstring(svg)
        assert root.tag == f"{SVG}svg"
        width, height = (float(v) for v in root.attrib["viewBox"].split()[2:])
        assert 200 < width < 720 and height > 250  # narrow enough for a phone
        assert root.attrib["width"] == str(round(width))
        assert "max-width:100%" in root.attrib["style"]
        texts = _texts(svg)
        joined = " ".join(texts)
        assert texts[0] == f"{plan.id} version {plan.version}"
        reached = {dest for _, _, dest, _ in _transitions(plan)}
        for state in plan.machine.states.values():
            if state.name in ("completed", "exited", "converted") and state.name not in reached:
                continue  # a terminal state nothing leads to is left out
            assert state.name in texts  # its name on a line of its own
            what = state.label.removeprefix(f"{state.name} (").removesuffix(")")
            assert what in joined  # what it does, on the lines below
        for source, trigger, _, label in _transitions(plan):
            assert label in joined, (source, trigger, label)
        if counts is None:
            assert not re.search(r"\d,\d{3}", joined)
            continue
        for state, n in counts.nodes.items():
            if state in reached or state in plan.steps[0].id:
                assert f"{n:,}" in joined
        # Each transition's count follows its label; the goal's label is written once, by `converted`,
        # and each step's goal line carries its count alone.
        for source, trigger, _, label in _transitions(plan):
            n = counts.edges[(source, trigger)]
            if trigger == "goal":
                assert f"{n:,}" in texts
            else:
                assert re.search(re.escape(label.split()[-1]) + r"( \S+)* ?(· )?" + f"{n:,}", joined), label


def _assert_no_text_overlaps(svg: str) -> None:
    """Every text inside the image, inside one box or clear of all, and no two texts meeting (their extents
    from the widths the layout assumes)."""
    root = ET.fromstring(svg)
    width, height = (float(v) for v in root.attrib["viewBox"].split()[2:])
    boxes = []
    for t in root.iter(f"{SVG}text"):
        x, y, size = float(t.attrib["x"]), float(t.attrib["y"]), float(t.attrib["font-size"])
        bold = t.attrib.get("font-weight") == "bold"
        w = text_width(t.text or "", size, bold) + sum(text_width(s.text or "", size, True) for s in t)
        if t.attrib.get("text-anchor") == "end":
            x -= w
        boxes.append((x, y - size * 0.8, x + w, y + size * 0.25, "".join(t.itertext())))
    frames = [
        (float(r.attrib["x"]), float(r.attrib["y"]), float(r.attrib["width"]), float(r.attrib["height"]))
        for r in root.iter(f"{SVG}rect")
        if r.attrib.get("rx") in ("6", "14")  # a step's box, a terminal state's outer frame
    ]
    for x0, y0, x1, y1, text in boxes:
        assert x0 >= 0 and x1 <= width and y0 >= 0 and y1 <= height, text
        # A text is inside one box (its name, what it does) or clear of every box (a label).
        inside = [fx <= x0 and x1 <= fx + fw and fy <= y0 and y1 <= fy + fh for fx, fy, fw, fh in frames]
        clear = [x1 <= fx or fx + fw <= x0 or y1 <= fy or fy + fh <= y0 for fx, fy, fw, fh in frames]
        assert (sum(inside) == 1 and sum(clear) == len(frames) - 1) or all(clear), text
    for a, b in itertools.combinations(boxes, 2):
        apart = a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
        assert apart, f"{a[4]!r} overlaps {b[4]!r}"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_two_texts_overlap_and_all_fit_in_the_image(path: Path) -> None:
    plan = _plan(path)
    _assert_no_text_overlaps(plan.diagram("svg"))
    _assert_no_text_overlaps(plan.diagram("svg", _counts(plan)))


LOOPS = """\
id: loops
version: 3
signal: count(purchase, within=1d) > 0
holdout: 0
steps:
  - id: ask
    send: {channel: sms, template: a.txt}
  - id: answered
    wait_for: {event: answer, timeout: 1d, else: answered}
  - split: {ask: 20, again: 30, done: 50}
  - id: again
    branch: {if: "count(purchase, within=2d) > 0", then: ask, else: next}
  - id: done
    branch: {if: "count(purchase, within=2d) > 0", then: next, else: next}
  - wait: 2d
  - id: back
    branch: {event: purchase, then: answered, else: exit}
goal: {event: purchase, within: 3d}
"""


def test_loops_self_loops_split_arms_and_two_arrows_down_are_drawn_apart() -> None:
    plan = compile_loaded(load_journey_text(LOOPS, "loops.yaml"))
    counts = _counts(plan)
    svg = plan.diagram("svg", counts)
    _assert_no_text_overlaps(svg)
    joined = " ".join(_texts(svg))
    for label in ("no answer within 1d", "arm 1 (20%)", "arm 2 (30%)", "arm 3 (50%)", "purchase seen"):
        assert label in joined
    # Both of done's transitions lead to the next step: two labels beside one arrow.
    assert f"yes · {counts.edges[('done', 'yes')]:,}" in joined
    assert f"no · {counts.edges[('done', 'no')]:,}" in joined
    root = ET.fromstring(svg)
    loops = [p for p in root.iter(f"{SVG}path") if p.attrib["stroke"] == "#b45309"]
    assert len(loops) == 4  # answered -> answered, step-3 -> ask, again -> ask, back -> answered
    assert "completed" not in _texts(svg)  # nothing leads there


def test_counts_are_written_in_mermaid_and_dot_too() -> None:
    plan = _plan(ROOT / "journeys" / "winback.yaml")
    counts = DiagramCounts({"offer": 1204, "step-2": 0}, {("step-2", "next"): 980, ("offer", "goal"): 0})
    mermaid = plan.diagram("mermaid", counts)
    assert 'state "offer (send email) · 1,204" as s0' in mermaid
    assert 'state "step-2 (wait 3d) · 0" as s1' in mermaid
    assert 'state "came_back (branch)" as s2' in mermaid  # absent from the counts: no number
    assert "s1 --> s2: after 3d · 980" in mermaid
    assert "s0 --> s9: goal purchase · 0" in mermaid
    assert "s3 --> s4: next\n" in mermaid
    dot = plan.diagram("dot", counts)
    assert 'offer [label="offer (send email) · 1,204\\l"]' in dot
    assert '"step-2" -> came_back [label="after 3d · 980"]' in dot
    svg_texts = _texts(plan.diagram("svg", counts))
    assert "send email · 1,204" in svg_texts and "wait 3d · 0" in svg_texts and "branch" in svg_texts
    assert "after 3d · 980" in svg_texts
    # Without counts, the text is what it always was.
    assert plan.diagram("mermaid", None) == plan.diagram("mermaid")
    assert "·" not in plan.diagram("mermaid") and "·" not in plan.diagram("dot")


def test_the_image_is_self_contained_and_can_sit_inline_beside_others() -> None:
    svg = _plan(ROOT / "examples" / "journeys" / "nps_loop.yaml").diagram("svg")
    for banned in ("<script", "href", "url(", "@import", "<style", "<foreignObject", " id=", "<image"):
        assert banned not in svg
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ')


def test_hostile_labels_are_escaped() -> None:
    hostile = '<script>alert("x")</script> & \'quoted\' "too"'
    svg = render_svg(
        f"{hostile} version 1",
        [("a&b", f"a&b ({hostile})"), ("<b>", "<b> (send email)"), ("completed", "completed")],
        [("a&b", "next", "<b>", hostile), ("<b>", "next", "completed", "next")],
        ("completed",),
        {"a&b": 3},
        {("a&b", "next"): 2},
    )
    assert "<script" not in svg and "<b>" not in svg
    assert "&lt;script&gt;" in svg and "&amp; " in svg and "&quot;" in svg
    root = ET.fromstring(svg)  # well-formed XML
    texts = _texts(svg)
    assert "a&b" in texts and "<b>" in texts
    joined = " ".join(texts)
    assert hostile.split(" & ")[0] in joined  # read back as the text it was
    assert root.find(f"{SVG}title") is not None and root.find(f"{SVG}title").text == f"{hostile} version 1"


def test_a_loop_goes_up_the_left_side_and_jumps_down_the_right() -> None:
    plan = _plan(ROOT / "examples" / "journeys" / "tiers" / "lapsed.yaml")
    svg = plan.diagram("svg")
    root = ET.fromstring(svg)
    paths = [p for p in root.iter(f"{SVG}path")]
    loop = [p for p in paths if p.attrib["stroke"] == "#b45309"]  # step-3 yes -> reactivation
    goal = [p for p in paths if p.attrib.get("stroke-dasharray")]
    assert len(loop) == 1 and len(goal) == len(plan.steps)
    box_x = min(float(r.attrib["x"]) for r in root.iter(f"{SVG}rect") if r.attrib.get("rx") == "6")
    lane_x = float(re.search(r"H([\d.]+)", loop[0].attrib["d"]).group(1))
    assert lane_x < box_x
    # The goal's rail is outside the loop's lane.
    assert float(re.search(r"H([\d.]+)", goal[0].attrib["d"]).group(1)) < lane_x


# ---------------------------------------------------------------------------------------------- browser


def _browser() -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; CI must apt-get install chromium")
        pytest.skip("chromium is not installed (apt-get install chromium); required when CI is set")
    if shutil.which("tesseract") is None:
        if os.environ.get("CI"):
            pytest.fail("tesseract is not installed; CI must apt-get install tesseract-ocr")
        pytest.skip("tesseract is not installed (apt-get install tesseract-ocr); required when CI is set")
    return browser


def _shoot(browser: str, page: Path, shot: Path, size: str, scale: int, tmp_path: Path) -> str:
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--force-device-scale-factor={scale}",
            f"--screenshot={shot}",
            f"--window-size={size}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    print(f"\nscreenshot: {shot}")
    ocr = subprocess.run(
        ["tesseract", str(shot), "-"], check=True, capture_output=True, text=True, timeout=120
    )
    return ocr.stdout.lower()


@pytest.mark.parametrize(("size", "scale"), [("1280,800", 1), ("390,844", 3)], ids=["desktop", "phone"])
def test_the_diagram_reads_in_a_browser(tmp_path: Path, size: str, scale: int) -> None:
    """The image inline in a page, as the console shows it: at 1280x800, and at a phone's 390x844 CSS
    pixels (three device pixels to one, as phones have), the step names and the counts are read back."""
    browser = _browser()
    plan = _plan(ROOT / "examples" / "journeys" / "high_value_winback.yaml")
    counts = DiagramCounts(
        {"step-1": 48213, "offer": 41877, "visited_after_email": 41877, "push": 30664},
        {("step-1", "next"): 41877, ("visited_after_email", "no"): 30664},
    )
    svg = plan.diagram("svg", counts)
    page = tmp_path / "diagram.html"
    page.write_text(
        '<!doctype html><meta charset="utf-8"><meta name="viewport" content="width=device-width">'
        f'<body style="margin:16px;background:#fff">{svg}</body>',
        encoding="utf-8",
    )
    text = _shoot(browser, page, tmp_path / "diagram.png", size, scale, tmp_path)
    for word in ("high_value_winback", "offer", "visited_after_email", "send email", "push"):
        assert word in text, (word, text)
    assert "41,877" in text and "48,213" in text, text
    assert "no session_start" in text, text
