"""A journey's diagram as one self-contained SVG image, laid out and written here in plain Python.

The image is read top to bottom like the journey file: the steps in file order, one box each (its id in
bold, what it does below), then the terminal states ``completed``, ``exited`` and ``converted`` (grey,
rounded, doubly framed) that something leads to. A transition to the box right below is a straight arrow
down; every other transition is a jump drawn at the side: forward jumps (a branch, a split arm, a
``wait_for``'s ``then``/``else`` that skips ahead) on the right in blue, backward ones (loops) on the left in
amber, and the goal, which every step can reach, as one dashed green rail on the far left into
``converted``. Jumps to the same state share one lane; lanes are nested so that the shortest jumps run
nearest the boxes. Each jump's label sits beside the box it leaves, each straight arrow's label beside the
arrow, and boxes grow to give every label its own row, so no two texts overlap.

Text widths are estimated from the widths of DejaVu Sans and Liberation Sans (Arial's metrics), the larger
of the two for each character, so labels fit in either font. The image uses no font file, no script, no
link, no ``<style>`` element and no element ids, so that several can be placed inline in one HTML page; it
has a ``viewBox`` and ``max-width: 100%``, so it scales down to a phone's width. Every text is escaped.
"""

from __future__ import annotations

import html
import textwrap
import unicodedata
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

FONT = "Helvetica, Arial, 'Liberation Sans', 'DejaVu Sans', sans-serif"
TITLE_SIZE = 16
NAME_SIZE = 15
TEXT_SIZE = 13
LINE = 17  # height of one line of 13 px text
WRAP = 20  # characters per line of an edge label (kept short: the image must read on a phone)
BOX_WRAP = 24  # characters per line of what a step does
MARGIN = 14
PAD = 12  # inside a box
MIN_BOX = 150
LANE = 14  # between two lanes
LABEL_GAP = 8  # between a box and the labels beside it
GAP = 26  # between two boxes with nothing written between them
ARROW = 7
INK = "#1f2937"
STEP_FILL, STEP_LINE = "#ffffff", "#475569"
TERMINAL_FILL, TERMINAL_LINE = "#e5e7eb", "#334155"
STRAIGHT, FORWARD, BACKWARD, GOAL = "#475569", "#1d4ed8", "#b45309", "#15803d"

# Advance widths of the printable ASCII characters (32..126) in hundredths of an em: the larger of DejaVu
# Sans and Liberation Sans, regular and bold.
_REGULAR = (
    "32 40 46 84 64 95 78 27 39 39 50 84 32 36 32 34 64 64 64 64 64 64 64 64 64 64 34 34 84 84 84 56 102 "
    "68 69 72 77 67 61 78 75 29 50 67 56 86 75 79 67 79 72 67 61 73 68 99 69 67 69 39 34 39 84 56 50 61 63 "
    "55 63 62 35 63 63 28 28 58 28 97 63 61 63 63 41 52 39 63 59 82 59 59 52 64 34 64 84"
)
_BOLD = (
    "35 46 52 84 70 100 87 31 46 46 52 84 38 42 38 37 70 70 70 70 70 70 70 70 70 70 40 40 84 84 84 61 100 77 "
    "76 73 83 68 68 82 84 37 56 77 64 100 84 85 73 85 77 72 68 81 77 110 77 72 73 46 37 46 84 56 50 67 72 59 "
    "72 68 44 72 71 34 34 67 34 104 71 69 72 72 49 60 48 71 65 92 65 65 58 71 37 71 84"
)
_WIDTHS = {
    False: {chr(32 + i): int(w) / 100 for i, w in enumerate(_REGULAR.split())},
    True: {chr(32 + i): int(w) / 100 for i, w in enumerate(_BOLD.split())},
}


def text_width(text: str, size: float, bold: bool = False) -> float:
    """The width ``text`` takes at ``size`` px, a little over what DejaVu Sans or Arial would take."""
    table = _WIDTHS[bold]
    ems = 0.0
    for ch in text:
        if ch in table:
            ems += table[ch]
        elif unicodedata.east_asian_width(ch) in ("W", "F"):
            ems += 1.0
        elif unicodedata.combining(ch):
            continue
        else:
            ems += 0.75
    return ems * size * 1.03


@dataclass
class _Edge:
    source: str
    trigger: str
    dest: str
    label: str
    kind: str = ""  # straight | forward | backward | goal
    lines: list[tuple[str, str]] = field(default_factory=list)  # (text, count) per line
    y: float = 0.0  # where it leaves its source box (jumps)


@dataclass
class _Box:
    name: str
    lines: list[tuple[str, str]]  # what the step does, and its count, as lines of (text, count)
    terminal: bool
    index: int
    right: list[_Edge | None] = field(default_factory=list)  # slots: an edge leaving, None: jumps arriving
    left: list[_Edge | None] = field(default_factory=list)
    top: float = 0.0
    height: float = 0.0
    in_right: float = 0.0  # where forward jumps arrive
    in_left: float = 0.0  # where backward jumps and the goal arrive


@dataclass(frozen=True)
class _Frame:
    """Where things go across: the boxes' left edge and width, and the label columns beside them."""

    box_x: float
    box_w: float
    left_w: float  # the labels left of the boxes (0: none)
    right_w: float

    @property
    def box_r(self) -> float:
        return self.box_x + self.box_w

    @property
    def centre(self) -> float:
        return self.box_x + self.box_w / 2

    def lane_x(self, kind: str, lane: int) -> float:
        """The x of a lane: forward lanes right of the right labels, the others left of the left ones."""
        if kind == "forward":
            return self.box_r + _column(self.right_w) + lane * LANE + LANE / 2
        return self.box_x - _column(self.left_w) - lane * LANE - LANE / 2


def render_svg(
    title: str,
    states: Sequence[tuple[str, str]],
    transitions: Sequence[tuple[str, str, str, str]],
    terminal: Collection[str],
    node_counts: Mapping[str, int] | None = None,
    edge_counts: Mapping[tuple[str, str], int] | None = None,
) -> str:
    """The SVG image of a machine: ``states`` as (name, label) in file order, ``transitions`` as (source,
    trigger, destination, label), ``terminal`` the terminal states' names; with ``node_counts`` (state ->
    instances that reached it) and ``edge_counts`` ((source, trigger) -> times taken) written on the boxes
    and the transitions where given."""
    boxes = _boxes(states, transitions, terminal, node_counts or {})
    edges = _edges(boxes, transitions, edge_counts or {})
    lanes = {kind: _lanes(boxes, edges, kind) for kind in ("forward", "backward")}
    _assign_slots(boxes, edges, lanes)
    goal_label = next((e.label for e in edges if e.kind == "goal"), "")
    goal_in = _wrap(goal_label, "", WRAP) if goal_label else []
    order = list(boxes.values())
    straight: dict[int, list[_Edge]] = {}
    for edge in edges:
        if edge.kind == "straight":
            straight.setdefault(boxes[edge.source].index, []).append(edge)

    # Across: the boxes as wide as the widest text in them; the label columns as wide as their labels (a
    # straight arrow's label starts at the boxes' middle and may reach past their right edge).
    box_w = max(
        [MIN_BOX]
        + [text_width(b.name, NAME_SIZE, bold=True) + 2 * PAD for b in order]
        + [_lines_width(b.lines) + 2 * PAD for b in order]
    )
    left_w = max([_lines_width(goal_in)] + [_lines_width(e.lines) for b in order for e in b.left if e])
    right_w = max(
        [0.0]
        + [_lines_width(e.lines) for b in order for e in b.right if e]
        + [_lines_width(e.lines) + LABEL_GAP - box_w / 2 for es in straight.values() for e in es]
    )
    n_right = max(lanes["forward"].values(), default=-1) + 1
    n_left = max(lanes["backward"].values(), default=-1) + 1 + (1 if goal_label else 0)
    frame = _Frame(MARGIN + n_left * LANE + _column(left_w), box_w, left_w, right_w)

    # Down: the title, the legend (with counts), the start, then the boxes and the gaps between them.
    head = [_text(MARGIN, MARGIN + TITLE_SIZE, title, TITLE_SIZE, INK, bold=True)]
    legend = "Figures: instances that reached each state, and times each transition was taken."
    legend_lines = textwrap.wrap(legend, 44) if node_counts or edge_counts else []
    for i, line in enumerate(legend_lines):
        head.append(_text(MARGIN, MARGIN + TITLE_SIZE + (i + 1) * LINE, line, TEXT_SIZE - 1, "#4b5563"))
    y: float = MARGIN + TITLE_SIZE + len(legend_lines) * LINE + 34
    for box in order:
        box.top = y
        content = 2 * PAD - 4 + NAME_SIZE + (len(box.lines) * LINE + 2 if box.lines else 0)
        sides = [sum(_slot_height(s, goal_in, box) for s in slots) + 8 for slots in (box.left, box.right)]
        box.height = max(content, *sides, 40.0)
        _place_slots(box, goal_in)
        y += box.height + _gap_height(straight.get(box.index, []))
    height = y - _gap_height(straight.get(order[-1].index, [])) + MARGIN
    width = max(
        [frame.box_r + _column(right_w) + n_right * LANE + MARGIN]
        + [MARGIN * 2 + text_width(title, TITLE_SIZE, bold=True)]
        + [MARGIN * 2 + text_width(line, TEXT_SIZE - 1) for line in legend_lines]
    )

    texts: list[str] = []
    shapes = _start(frame, order[0])
    for box in order:
        shapes.extend(_box(box, frame.box_x, box_w))
        if box.index in straight:
            _straight(frame, box, order[box.index + 1], straight[box.index], shapes, texts)
    _jumps(frame, boxes, edges, lanes, shapes, texts)
    if goal_in and "converted" in boxes:
        y_in = boxes["converted"].in_left
        for i, (text, _) in enumerate(goal_in):
            ty = y_in - 5 - (len(goal_in) - 1 - i) * LINE
            texts.append(_label(frame.box_x - LABEL_GAP, ty, text, "", GOAL, "end"))

    w, h = round(width), round(height)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
        f'role="img" aria-label="{_esc(title)}" font-family="{_esc(FONT)}" '
        f'style="max-width:100%;height:auto;background:#ffffff">\n'
        f"<title>{_esc(title)}</title>\n"
        f'<rect x="0" y="0" width="{w}" height="{h}" fill="#ffffff"/>\n'
        + "".join(t + "\n" for t in head)
        + "".join(s + "\n" for s in shapes)
        + "".join(t + "\n" for t in texts)
        + "</svg>\n"
    )


def _boxes(
    states: Sequence[tuple[str, str]],
    transitions: Sequence[tuple[str, str, str, str]],
    terminal: Collection[str],
    counts: Mapping[str, int],
) -> dict[str, _Box]:
    """A box per step in file order, then per terminal state that something leads to."""
    reached = {dest for _, _, dest, _ in transitions}
    steps = [s for s in states if s[0] not in terminal]
    ends = [s for s in states if s[0] in terminal and s[0] in reached]
    boxes: dict[str, _Box] = {}
    for name, label in [*steps, *ends]:
        # The machine's label is "name (what it does)"; the box writes the two on two lines.
        what = label[len(name) + 2 : -1] if label.startswith(f"{name} (") and label.endswith(")") else ""
        count = f"{counts[name]:,}" if name in counts else ""
        lines = _wrap(_clean(what), count, BOX_WRAP) if what or count else []
        boxes[name] = _Box(_clean(name), lines, name in terminal, len(boxes))
    return boxes


def _edges(
    boxes: Mapping[str, _Box],
    transitions: Sequence[tuple[str, str, str, str]],
    counts: Mapping[tuple[str, str], int],
) -> list[_Edge]:
    """The transitions, each of a kind: straight (to the box right below), forward, backward, or goal."""
    edges = []
    for source, trigger, dest, label in transitions:
        if source not in boxes or dest not in boxes:
            continue
        edge = _Edge(source, trigger, dest, _clean(label))
        count = f"{counts[(source, trigger)]:,}" if (source, trigger) in counts else ""
        if trigger == "goal":
            # The goal's label is written once, by converted; each step's line carries its count only.
            edge.kind, edge.lines = "goal", [("", count)] if count else []
        else:
            gap = boxes[dest].index - boxes[source].index
            edge.kind = "straight" if gap == 1 else "forward" if gap > 1 else "backward"
            edge.lines = _wrap(edge.label, count, WRAP)
        edges.append(edge)
    return edges


def _assign_slots(
    boxes: Mapping[str, _Box], edges: Sequence[_Edge], lanes: Mapping[str, Mapping[str, int]]
) -> None:
    """The slots beside each box. Right: jumps arriving, then jumps leaving, the outermost lane first (so
    that a jump's line crosses none of the box's own jumps). Left: loops leaving, the innermost lane first,
    then the goal, then loops and the goal arriving."""
    for name, box in boxes.items():
        out = [e for e in edges if e.source == name]
        into = {e.kind for e in edges if e.dest == name}
        forward = sorted((e for e in out if e.kind == "forward"), key=lambda e: -lanes["forward"][e.dest])
        backward = sorted((e for e in out if e.kind == "backward"), key=lambda e: lanes["backward"][e.dest])
        box.right = [*([None] if "forward" in into else []), *forward]
        box.left = [
            *backward,
            *(e for e in out if e.kind == "goal"),
            *([None] if into & {"backward", "goal"} else []),
        ]


def _start(frame: _Frame, first: _Box) -> list[str]:
    """The start: a dot and an arrow into the first step."""
    y = first.top - 20
    return [
        f'<circle cx="{frame.centre:.1f}" cy="{y:.1f}" r="6" fill="{INK}"/>',
        _line(frame.centre, y, frame.centre, first.top - ARROW, STRAIGHT),
        _arrow(frame.centre, first.top, "down", STRAIGHT),
    ]


def _straight(
    frame: _Frame, box: _Box, below: _Box, edges: Sequence[_Edge], shapes: list[str], texts: list[str]
) -> None:
    """The arrow from ``box`` straight down to the box below it, its labels beside it."""
    bottom = box.top + box.height
    shapes.append(_line(frame.centre, bottom, frame.centre, below.top - ARROW, STRAIGHT))
    shapes.append(_arrow(frame.centre, below.top, "down", STRAIGHT))
    lines = [line for e in edges for line in e.lines]
    y = bottom + (below.top - bottom - len(lines) * LINE) / 2 + TEXT_SIZE - 1
    for i, (text, count) in enumerate(lines):
        texts.append(_label(frame.centre + LABEL_GAP, y + i * LINE, text, count, STRAIGHT, "start"))


def _jumps(
    frame: _Frame,
    boxes: Mapping[str, _Box],
    edges: Sequence[_Edge],
    lanes: Mapping[str, Mapping[str, int]],
    shapes: list[str],
    texts: list[str],
) -> None:
    """Every transition but the straight ones: out of its box's side, along its lane, into the side of its
    destination; its label above the line where it leaves."""
    goal_lane = max(lanes["backward"].values(), default=-1) + 1
    arrived: set[tuple[str, int]] = set()
    for edge in edges:
        if edge.kind == "straight":
            continue
        dest = boxes[edge.dest]
        colour = {"forward": FORWARD, "backward": BACKWARD, "goal": GOAL}[edge.kind]
        if edge.kind == "forward":
            sign, x0, y1 = 1, frame.box_r, dest.in_right
            x1 = frame.lane_x("forward", lanes["forward"][edge.dest])
        else:
            sign, x0, y1 = -1, frame.box_x, dest.in_left
            x1 = frame.lane_x("backward", goal_lane if edge.kind == "goal" else lanes["backward"][edge.dest])
        dash = ' stroke-dasharray="5 4"' if edge.kind == "goal" else ""
        path = _route(x0, edge.y, x1, y1, sign)
        shapes.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="1.6"{dash}/>')
        if (edge.dest, sign) not in arrived:
            arrived.add((edge.dest, sign))
            shapes.append(_arrow(x0, y1, "left" if sign > 0 else "right", colour))
        for i, (text, count) in enumerate(edge.lines):
            y = edge.y - 5 - (len(edge.lines) - 1 - i) * LINE
            texts.append(
                _label(x0 + sign * LABEL_GAP, y, text, count, colour, "start" if sign > 0 else "end")
            )


# ---------------------------------------------------------------------------------------------- layout


def _wrap(label: str, count: str, width: int) -> list[tuple[str, str]]:
    """A label as lines of about ``width`` characters (words kept whole), the count after the last one."""
    lines = textwrap.wrap(label, width, break_long_words=False, break_on_hyphens=False) or [""]
    if count and lines[-1] and len(lines[-1]) + len(count) + 3 > width + 4:
        lines.append("")
    out = [(line, "") for line in lines]
    out[-1] = (out[-1][0], count)
    return out


def _line_width(text: str, count: str) -> float:
    sep = " · " if text and count else ""
    return text_width(text + sep, TEXT_SIZE) + text_width(count, TEXT_SIZE, bold=True)


def _lines_width(lines: Sequence[tuple[str, str]]) -> float:
    return max([0.0] + [_line_width(text, count) for text, count in lines])


def _slot_height(slot: _Edge | None, goal_in: Sequence[tuple[str, str]], box: _Box) -> float:
    """A slot's height: an edge's label lines, or (None) room for arrows coming in, with the goal's label
    above the arrow into ``converted``."""
    if slot is None:
        return len(goal_in) * LINE + 8 if box.name == "converted" else 12.0
    return max(1, len(slot.lines)) * LINE + 8


def _gap_height(straight: Sequence[_Edge]) -> float:
    lines = sum(len(e.lines) for e in straight)
    return max(GAP, lines * LINE + 14)


def _place_slots(box: _Box, goal_in: Sequence[tuple[str, str]]) -> None:
    """The height of each slot beside ``box``, centred on its side: an edge's line runs under its label."""
    for side in ("left", "right"):
        slots = box.left if side == "left" else box.right
        heights = [_slot_height(s, goal_in, box) for s in slots]
        y = box.top + (box.height - sum(heights)) / 2
        for slot, h in zip(slots, heights, strict=True):
            at = y + h - 6 if slot is not None or box.name == "converted" else y + h / 2
            if slot is not None:
                slot.y = at
            elif side == "right":
                box.in_right = at
            else:
                box.in_left = at
            y += h


def _column(width: float) -> float:
    """The room a column of labels ``width`` wide takes beside the boxes."""
    return width + LABEL_GAP + 6 if width else 0.0


def _lanes(boxes: Mapping[str, _Box], edges: Sequence[_Edge], kind: str) -> dict[str, int]:
    """A lane per destination of ``kind`` jumps, the shortest jumps nearest the boxes, lanes shared by jumps
    whose spans do not meet."""
    spans: dict[str, tuple[int, int]] = {}
    for edge in edges:
        if edge.kind != kind:
            continue
        a, b = sorted((boxes[edge.source].index, boxes[edge.dest].index))
        lo, hi = spans.get(edge.dest, (a, b))
        spans[edge.dest] = (min(lo, a), max(hi, b))
    taken: list[list[tuple[int, int]]] = []
    out: dict[str, int] = {}
    for dest, (lo, hi) in sorted(spans.items(), key=lambda kv: (kv[1][1] - kv[1][0], kv[1][0])):
        for lane, used in enumerate(taken):
            if all(hi < u_lo or lo > u_hi for u_lo, u_hi in used):
                used.append((lo, hi))
                out[dest] = lane
                break
        else:
            taken.append([(lo, hi)])
            out[dest] = len(taken) - 1
    return out


# ---------------------------------------------------------------------------------------------- drawing


def _route(x0: float, y0: float, x1: float, y1: float, sign: int) -> str:
    """A path out of a box side at (x0, y0), along the lane at x1 and back into a box at (x0, y1), with
    rounded corners; it stops short of the box by the arrowhead's length."""
    dy = y1 - y0
    r = min(8.0, abs(dy) / 2, abs(x1 - x0) / 2)
    down = 1 if dy >= 0 else -1
    end = x0 + sign * ARROW
    return (
        f"M{x0:.1f},{y0:.1f} H{x1 - sign * r:.1f} Q{x1:.1f},{y0:.1f} {x1:.1f},{y0 + down * r:.1f} "
        f"V{y1 - down * r:.1f} Q{x1:.1f},{y1:.1f} {x1 - sign * r:.1f},{y1:.1f} H{end:.1f}"
    )


def _arrow(x: float, y: float, pointing: str, colour: str) -> str:
    """An arrowhead whose tip is at (x, y)."""
    a, b = ARROW, ARROW / 2
    points = {
        "down": [(x, y), (x - b, y - a), (x + b, y - a)],
        "left": [(x, y), (x + a, y - b), (x + a, y + b)],
        "right": [(x, y), (x - a, y - b), (x - a, y + b)],
    }[pointing]
    return f'<polygon points="{" ".join(f"{px:.1f},{py:.1f}" for px, py in points)}" fill="{colour}"/>'


def _line(x0: float, y0: float, x1: float, y1: float, colour: str) -> str:
    ends = f'x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}"'
    return f'<line {ends} stroke="{colour}" stroke-width="1.6"/>'


def _box(box: _Box, x: float, w: float) -> list[str]:
    out = []
    if box.terminal:
        out.append(
            f'<rect x="{x:.1f}" y="{box.top:.1f}" width="{w:.1f}" height="{box.height:.1f}" rx="14" '
            f'fill="{TERMINAL_FILL}" stroke="{TERMINAL_LINE}" stroke-width="1.4"/>'
        )
        out.append(
            f'<rect x="{x + 3:.1f}" y="{box.top + 3:.1f}" width="{w - 6:.1f}" height="{box.height - 6:.1f}" '
            f'rx="11" fill="none" stroke="{TERMINAL_LINE}" stroke-width="1"/>'
        )
    else:
        out.append(
            f'<rect x="{x:.1f}" y="{box.top:.1f}" width="{w:.1f}" height="{box.height:.1f}" rx="6" '
            f'fill="{STEP_FILL}" stroke="{STEP_LINE}" stroke-width="1.4"/>'
        )
    block = NAME_SIZE + (len(box.lines) * LINE + 2 if box.lines else 0)
    y = box.top + (box.height - block) / 2 + NAME_SIZE - 3
    out.append(_text(x + PAD, y, box.name, NAME_SIZE, INK, bold=True))
    for i, (text, count) in enumerate(box.lines):
        out.append(_label(x + PAD, y + (i + 1) * LINE + 2, text, count, "#374151", "start"))
    return out


def _text(x: float, y: float, text: str, size: int, colour: str, bold: bool = False) -> str:
    weight = ' font-weight="bold"' if bold else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{colour}"{weight}>{_esc(text)}</text>'


def _label(x: float, y: float, text: str, count: str, colour: str, anchor: str) -> str:
    """A line of 13 px text, its count (if any) in bold after a middle dot."""
    inner = _esc(text)
    if count:
        inner += f'{" · " if text else ""}<tspan font-weight="bold" fill="{INK}">{_esc(count)}</tspan>'
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{TEXT_SIZE}" fill="{colour}" text-anchor="{anchor}">'
        f"{inner}</text>"
    )


def _clean(text: str) -> str:
    """``text`` on one line, without the control characters XML cannot hold."""
    return " ".join("".join(" " if unicodedata.category(c) == "Cc" else c for c in text).split())


def _esc(text: str) -> str:
    return html.escape(text, quote=True)
