"""Journey test files (``*.test.yaml``): read with the journeys' strict YAML loader and checked key by key.

A file gives one test case, or several under ``tests:`` (each with a ``name``); what the file gives at its
top level is shared by every case (customers and events are added to each case's own, the other keys are
defaults a case may override)::

    journey: cart_abandonment_by_cart      # the journey's id (or a list of ids run together)
    start: 2024-05-06T09:00:00Z            # optional (default 2024-05-01T09:00:00Z); times below are
    tick: 30m                              #   relative to it (+2h, -30d); a tick every `tick` (default 1h)
    run: 2d                                # ticks from start to start + run (or `until: +2d`)
    holdout: 0                             # optional: the journey's holdout percent, for this test only
    customers:
      pat: {first_name: Pat}               # opted in on every channel, pat@example.com, a UK mobile
    events:
      - {customer: pat, event: add_to_cart, at: +10m, cart_id: P1}
    expect:
      - {customer: pat, sent: {step: reminder, at: +4h30m, contains: "Pat"}}

Every mistake is a ``Problem`` (``file:line:column: message``); unknown keys name the closest known one.
The expectations are checked by ``_expectations``; the cases are run by ``_runner``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from orchestrator.clock import parse_instant
from orchestrator.durations import UNIT_SECONDS, parse_duration
from orchestrator.language import Locations, Path_, Problem, SpecError, load_yaml, read_text
from orchestrator.testing.clock import T0

#: The keys of a test case (at the top of a file, or in each entry of ``tests:``).
CASE_KEYS = ("journey", "start", "tick", "run", "until", "holdout", "customers", "events", "expect")
#: The kinds of expectation: one of these keys in each entry of ``expect:``.
EXPECTATIONS = ("enters", "sent", "suppressed", "exits", "still_in", "converted")
#: Keys of an event besides its properties.
EVENT_KEYS = ("customer", "event", "at", "every", "times", "properties")
#: Every how long a test ticks unless it says.
DEFAULT_TICK = timedelta(hours=1)
#: The most ticks one test case may run (a typo such as ``tick: 1s`` with ``run: 30d`` is caught).
MAX_TICKS = 20_000
#: ``exits:`` written as one word.
EXIT_WORDS = ("goal", "exit_when", "completed")

_RELATIVE = re.compile(r"^\s*([+-])?\s*((?:\d+(?:\.\d+)?\s*[smhdw]\s*)+)$")
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")


@dataclass(frozen=True)
class EventSpec:
    """One event of a test: a customer, a name, an instant and properties; ``line`` where it is written."""

    customer: str
    name: str
    at: datetime
    properties: dict[str, Any]
    line: int


@dataclass(frozen=True)
class Expectation:
    """One expectation: a ``kind`` (``EXPECTATIONS``) about ``customer``, its settings in ``spec``
    (instants already resolved against the case's start), and the line it is written on."""

    customer: str
    kind: str
    spec: dict[str, Any]
    line: int
    journey: str | None = None


@dataclass
class TestCase:
    """One test case: journeys, a clock's path, customers, events and what is expected."""

    __test__ = False  # not a pytest test class

    file: str
    name: str
    line: int
    journeys: tuple[str, ...]
    journeys_line: int
    start: datetime
    tick: timedelta
    end: datetime
    holdout: float | None
    customers: dict[str, dict[str, Any]]
    events: list[EventSpec]
    expectations: list[Expectation]

    def ticks(self) -> int:
        """How many ticks the case runs (at start, then every ``tick`` up to ``end``)."""
        return int((self.end - self.start) / self.tick) + 1


@dataclass
class TestFile:
    """A test file: its cases, or the problems that make it unusable (then no case runs)."""

    __test__ = False

    path: Path
    cases: list[TestCase] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # Transitions no test can take, each (step id, trigger, why): left out of the coverage.
    unreachable: list[tuple[str, str, str]] = field(default_factory=list)


def relative_time(value: Any, start: datetime) -> datetime:
    """An instant written in a test: relative to ``start`` (``+2h``, ``-30d``, ``+1d 2h``, ``0``) or an
    ISO-8601 instant with its offset. Raises ``ValueError`` saying what is accepted."""
    if isinstance(value, bool):
        raise ValueError("expected a time such as +2h, -30d or 2024-05-06T10:00:00Z")
    if isinstance(value, int | float) and value == 0:
        return start
    if isinstance(value, str):
        match = _RELATIVE.match(value)
        if match:
            seconds = sum(float(n) * UNIT_SECONDS[u] for n, u in _PART.findall(match.group(2)))
            return start + timedelta(seconds=-seconds if match.group(1) == "-" else seconds)
        if "T" in value or ":" in value:
            try:
                return parse_instant(value)
            except ValueError:
                pass
    raise ValueError(
        f"{value!r} is not a time: write it relative to the start (+2h, -30d, +1d 2h) or as an ISO-8601 "
        "instant with its offset (2024-05-06T10:00:00Z)"
    )


def parse_span(value: Any) -> timedelta:
    """A duration as journeys write it (``3d``), or several added up (``8d 7h``, ``1d12h``)."""
    if isinstance(value, str):
        match = _RELATIVE.match(value)
        if match and not match.group(1):
            return timedelta(seconds=sum(float(n) * UNIT_SECONDS[u] for n, u in _PART.findall(value)))
    return parse_duration(value)


def format_offset(instant: datetime, start: datetime) -> str:
    """``instant`` as a test writes it: ``+4h30m``, ``-2d``, ``+0h``."""
    seconds = round((instant - start).total_seconds())
    sign = "-" if seconds < 0 else "+"
    seconds = abs(seconds)
    parts = []
    for unit in ("d", "h", "m", "s"):
        size = UNIT_SECONDS[unit]
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return sign + ("".join(parts) or "0h")


def format_span(delta: timedelta) -> str:
    """A tolerance as written: ``1h``, ``30m``, ``1d12h``."""
    return format_offset(datetime.min + delta, datetime.min).lstrip("+")


def read_test_file(path: Path) -> TestFile:
    """Read and check one test file; a file with mistakes comes back with its ``problems`` and no case."""
    file = str(path)
    result = TestFile(path)
    try:
        data, locations = load_yaml(read_text(path), file)
    except SpecError as exc:
        result.problems = list(exc.problems)
        return result
    reader = _Reader(file, locations)
    result.cases = reader.cases(
        data, path.name.removesuffix(".yaml").removesuffix(".yml").removesuffix(".test")
    )
    if isinstance(data, dict) and "unreachable" in data:
        result.unreachable = reader.unreachable(data["unreachable"])
    result.problems = reader.problems
    if result.problems:
        result.cases = []
    return result


class _Reader:
    """Checks a loaded test file, gathering every problem with its place."""

    def __init__(self, file: str, locations: Locations) -> None:
        self.file = file
        self.locations = locations
        self.problems: list[Problem] = []

    # ------------------------------------------------------------------------------------------ helpers

    def problem(self, path: Path_, message: str, *, key: bool = False) -> None:
        loc = self.locations.of(path, key=key)
        found = Problem(self.file, loc.line, loc.column, message)
        if found not in self.problems:
            self.problems.append(found)

    def line(self, path: Path_) -> int:
        return self.locations.of(path).line

    def keys(self, value: dict[str, Any], path: Path_, allowed: tuple[str, ...], what: str) -> None:
        """An unknown key is a problem, naming the closest allowed one."""
        for key in value:
            if key in allowed:
                continue
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(allowed)}"
            self.problem((*path, key), f"{what}: unknown key {key!r}{hint}", key=True)

    def mapping(self, value: Any, path: Path_, what: str) -> dict[str, Any] | None:
        if isinstance(value, dict):
            return value
        self.problem(path, f"{what} must be a mapping (key: value)")
        return None

    def text(self, value: Any, path: Path_, what: str) -> str | None:
        if isinstance(value, str) and value.strip():
            return value
        self.problem(path, f"{what} must be text")
        return None

    def duration(self, value: Any, path: Path_, what: str, *, zero: bool = False) -> timedelta | None:
        if zero and value == 0 and not isinstance(value, bool):
            return timedelta(0)
        try:
            delta = parse_span(value)
        except ValueError as exc:
            self.problem(path, f"{what}: {exc}")
            return None
        if delta < timedelta(0) or (delta == timedelta(0) and not zero):
            self.problem(path, f"{what} must be longer than 0")
            return None
        return delta

    def instant(self, value: Any, path: Path_, start: datetime, what: str) -> datetime | None:
        try:
            return relative_time(value, start)
        except ValueError as exc:
            self.problem(path, f"{what}: {exc}")
            return None

    def known(self, name: str, known: dict[str, Any], path: Path_) -> bool:
        if name in known:
            return True
        close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else f" ({', '.join(known) or 'none'})"
        self.problem(path, f"customer {name!r} is not among the test's customers{hint}")
        return False

    # ------------------------------------------------------------------------------------------ cases

    def cases(self, data: Any, default_name: str) -> list[TestCase]:
        top = self.mapping(data, (), "a test file")
        if top is None:
            return []
        self.keys(top, (), (*CASE_KEYS, "name", "tests", "unreachable"), "the test file")
        tests = top.get("tests")
        if tests is None:
            name = top.get("name", default_name)
            case = self.case(top, (), top, name if isinstance(name, str) else default_name, 1)
            return [case] if case is not None else []
        if "name" in top:
            self.problem(("name",), "with tests: give each test its name, not the file", key=True)
        if not isinstance(tests, list) or not tests:
            self.problem(("tests",), "tests must be a list of test cases, each with a name")
            return []
        out: list[TestCase] = []
        names: dict[str, int] = {}
        for i, raw in enumerate(tests):
            entry = self.mapping(raw, ("tests", i), f"tests[{i}]")
            if entry is None:
                continue
            self.keys(entry, ("tests", i), (*CASE_KEYS, "name"), f"tests[{i}]")
            name = entry.get("name")
            if not isinstance(name, str) or not name.strip():
                self.problem(("tests", i), f"tests[{i}]: missing its name (name: what it shows)")
                name = f"tests[{i}]"
            elif name in names:
                self.problem(
                    ("tests", i, "name"), f"two tests are named {name!r} (first at line {names[name]})"
                )
            names.setdefault(name, self.line(("tests", i)))
            case = self.case(top, ("tests", i), entry, name, self.line(("tests", i)))
            if case is not None:
                out.append(case)
        return out

    def case(
        self, top: dict[str, Any], at: Path_, own: dict[str, Any], name: str, line: int
    ) -> TestCase | None:
        """The case ``own`` (at path ``at``), with the file's top-level ``top`` as its defaults."""

        def pick(key: str) -> tuple[Any, Path_]:
            if key in own:
                return own[key], (*at, key)
            return top.get(key), (key,)

        before = len(self.problems)
        journey, jpath = pick("journey")
        journeys: tuple[str, ...] = ()
        if journey is None:
            self.problem(at, "missing 'journey': the id of the journey to test")
        elif isinstance(journey, str) and journey.strip():
            journeys = (journey,)
        elif isinstance(journey, list) and journey and all(isinstance(j, str) and j for j in journey):
            journeys = tuple(journey)
        else:
            self.problem(jpath, "journey must be a journey id, or a list of ids")

        start_raw, spath = pick("start")
        start = T0
        if start_raw is not None:
            try:
                start = parse_instant(start_raw if isinstance(start_raw, str) else "")
            except ValueError:
                self.problem(spath, "start must be an ISO-8601 instant with its offset: 2024-05-06T09:00:00Z")

        tick_raw, tpath = pick("tick")
        tick = DEFAULT_TICK if tick_raw is None else (self.duration(tick_raw, tpath, "tick") or DEFAULT_TICK)

        run_raw, rpath = pick("run")
        until_raw, upath = pick("until")
        end = start
        if run_raw is not None and until_raw is not None:
            self.problem(upath, "give either run (how long) or until (when to stop), not both")
        elif run_raw is not None:
            span = self.duration(run_raw, rpath, "run", zero=True)
            end = start + span if span is not None else start
        elif until_raw is not None:
            found = self.instant(until_raw, upath, start, "until")
            if found is not None and found < start:
                self.problem(upath, "until is before the start")
            end = found if found is not None and found >= start else start
        else:
            self.problem(at, "say how long the clock runs: run: 3d (or until: +3d)")
        if (end - start) / tick + 1 > MAX_TICKS:
            self.problem(
                tpath if tick_raw is not None else rpath, f"more than {MAX_TICKS} ticks: tick less often"
            )
            end = start

        holdout_raw, hpath = pick("holdout")
        holdout: float | None = None
        if holdout_raw is not None:
            ok = isinstance(holdout_raw, int | float) and not isinstance(holdout_raw, bool)
            if not ok or not 0 <= holdout_raw <= 100:
                self.problem(hpath, "holdout must be a percent from 0 to 100")
            else:
                holdout = float(holdout_raw)

        customers: dict[str, dict[str, Any]] = {}
        for source, path in self.sources(top, own, at, "customers"):
            raw = source.get("customers")
            if raw is None:
                continue
            declared = self.mapping(raw, path, "customers")
            for cid, attributes in (declared or {}).items():
                attrs = (
                    {} if attributes is None else self.mapping(attributes, (*path, cid), f"customer {cid}")
                )
                if attrs is None:
                    continue
                if "id" in attrs:
                    self.problem((*path, cid, "id"), "the customer's id is its key in customers", key=True)
                customers[cid] = {k: v for k, v in attrs.items() if k != "id"}

        events: list[EventSpec] = []
        for source, path in self.sources(top, own, at, "events"):
            raw = source.get("events")
            if raw is None:
                continue
            if not isinstance(raw, list):
                self.problem(path, "events must be a list")
                continue
            for i, entry in enumerate(raw):
                events.extend(self.event(entry, (*path, i), start, customers))

        expectations: list[Expectation] = []
        for source, path in self.sources(top, own, at, "expect"):
            raw = source.get("expect")
            if raw is None:
                continue
            if not isinstance(raw, list):
                self.problem(path, "expect must be a list of expectations")
                continue
            for i, entry in enumerate(raw):
                found_exp = self.expectation(entry, (*path, i), start, customers)
                if found_exp is not None:
                    expectations.append(found_exp)
        if not expectations and len(self.problems) == before:
            self.problem(at, f"test {name!r} expects nothing: add an expect: list")
        if len(self.problems) > before:
            return None
        return TestCase(
            self.file,
            name,
            line,
            journeys,
            self.line(jpath),
            start,
            tick,
            end,
            holdout,
            customers,
            sorted(events, key=lambda e: e.at),
            expectations,
        )

    @staticmethod
    def sources(
        top: dict[str, Any], own: dict[str, Any], at: Path_, key: str
    ) -> list[tuple[dict[str, Any], Path_]]:
        """Where a case's ``key`` comes from: the file's top level, then the case itself (in ``tests:``)."""
        return [(top, (key,)), (own, (*at, key))] if at else [(top, (key,))]

    def unreachable(self, raw: Any) -> list[tuple[str, str, str]]:
        """``unreachable: [{step: bought_it, answer: yes, why: ...}]``: transitions no test can take; or
        ``{outcome: exit_when, why: ...}`` (``goal`` or ``exit_when``): an outcome no test can reach."""
        if not isinstance(raw, list):
            self.problem(("unreachable",), "unreachable must be a list of {step, answer, why}")
            return []
        out = []
        for i, entry in enumerate(raw):
            path = ("unreachable", i)
            found = self.mapping(entry, path, "an unreachable transition")
            if found is None:
                continue
            self.keys(found, path, ("step", "answer", "outcome", "why"), "an unreachable transition")
            if "outcome" in found:
                outcome = found["outcome"]
                if outcome not in ("goal", "exit_when") or "step" in found or "answer" in found:
                    self.problem((*path, "outcome"), "write outcome: goal or exit_when (without a step)")
                why = self.text(found.get("why"), (*path, "why"), "why (say why no test can reach it)")
                if outcome in ("goal", "exit_when") and why is not None:
                    out.append(("", str(outcome), why))
                continue
            step = self.text(found.get("step"), (*path, "step"), "step")
            why = self.text(found.get("why"), (*path, "why"), "why (say why no test can take it)")
            answer = found.get("answer", "next")
            answer = {True: "yes", False: "no"}.get(answer, answer) if isinstance(answer, bool) else answer
            if answer not in ("yes", "no", "next"):
                self.problem((*path, "answer"), "answer must be yes or no")
            if step is not None and why is not None:
                out.append((step, str(answer), why))
        return out

    # ------------------------------------------------------------------------------------------ events

    def event(
        self, raw: Any, path: Path_, start: datetime, customers: dict[str, dict[str, Any]]
    ) -> list[EventSpec]:
        entry = self.mapping(raw, path, "an event")
        if entry is None:
            return []
        for key in ("customer", "event", "at"):
            if key not in entry:
                close = difflib.get_close_matches(key, [k for k in entry if k not in EVENT_KEYS], n=1)
                hint = f" (is {close[0]!r} a typo?)" if close else ""
                self.problem(path, f"an event needs {key!r}{hint}")
        if any(key not in entry for key in ("customer", "event", "at")):
            return []
        who = entry["customer"]
        names = who if isinstance(who, list) else [who]
        if not names or not all(isinstance(n, str) for n in names):
            self.problem((*path, "customer"), "customer must be a customer's name, or a list of names")
            return []
        ok = all(self.known(n, customers, (*path, "customer")) for n in names)
        name = self.text(entry["event"], (*path, "event"), "event")
        at = self.instant(entry["at"], (*path, "at"), start, "at")
        properties = {k: v for k, v in entry.items() if k not in EVENT_KEYS}
        if "properties" in entry:
            more = self.mapping(entry["properties"], (*path, "properties"), "properties")
            properties.update(more or {})
        times = entry.get("times", 1)
        if isinstance(times, bool) or not isinstance(times, int) or not 1 <= times <= 1000:
            self.problem((*path, "times"), "times must be a whole number from 1 to 1000")
            times = 1
        every = timedelta(0)
        if "every" in entry:
            every = self.duration(entry["every"], (*path, "every"), "every") or timedelta(0)
        elif times > 1:
            self.problem((*path, "times"), "times needs every: how far apart the events are (every: 1d)")
        if not ok or name is None or at is None:
            return []
        line = self.line(path)
        return [
            EventSpec(n, name, at + i * every, dict(properties), line) for n in names for i in range(times)
        ]

    # ------------------------------------------------------------------------------------------ expect

    def expectation(
        self, raw: Any, path: Path_, start: datetime, customers: dict[str, dict[str, Any]]
    ) -> Expectation | None:
        entry = self.mapping(raw, path, "an expectation")
        if entry is None:
            return None
        extra = {"enters": ("arm", "times", "at", "within")}
        allowed = ("customer", "journey", *EXPECTATIONS, *extra["enters"])
        self.keys(entry, path, allowed, "an expectation")
        kinds = [k for k in EXPECTATIONS if k in entry]
        if len(kinds) != 1:
            what = "none" if not kinds else " and ".join(kinds)
            self.problem(path, f"an expectation says one of {', '.join(EXPECTATIONS)} (found {what})")
            return None
        kind = kinds[0]
        if kind != "enters":
            for key in extra["enters"]:
                if key in entry:
                    self.problem(
                        (*path, key), f"{key} goes with enters (or inside {kind}: {{...}})", key=True
                    )
        who = entry.get("customer")
        if not isinstance(who, str):
            self.problem(path, "an expectation names its customer (customer: ann)")
            return None
        if not self.known(who, customers, (*path, "customer")):
            return None
        journey = entry.get("journey")
        if journey is not None and not isinstance(journey, str):
            self.problem((*path, "journey"), "journey must be a journey id")
            journey = None
        value = entry[kind]
        vpath = (*path, kind)
        spec: dict[str, Any] | None
        if kind == "enters":
            spec = self.enters(entry, path, start)
        elif kind in ("sent", "suppressed"):
            spec = self.message(kind, value, vpath, start)
        elif kind == "exits":
            spec = self.exits(value, vpath, start)
        elif kind == "still_in":
            spec = self.still_in(value, vpath)
        else:
            spec = self.converted(value, vpath, start)
        if spec is None:
            return None
        return Expectation(who, kind, spec, self.line(path), journey)

    def timing(self, value: dict[str, Any], path: Path_, start: datetime, spec: dict[str, Any]) -> None:
        """``at`` and ``within`` (a tolerance either side; 0 unless given) into ``spec``."""
        if "at" in value:
            spec["at"] = self.instant(value["at"], (*path, "at"), start, "at")
            spec["within"] = timedelta(0)
            if "within" in value:
                spec["within"] = self.duration(value["within"], (*path, "within"), "within")
        elif "within" in value:
            self.problem((*path, "within"), "within is a tolerance around at: give at too", key=True)

    def enters(self, entry: dict[str, Any], path: Path_, start: datetime) -> dict[str, Any] | None:
        value = entry["enters"]
        if not isinstance(value, bool):
            self.problem((*path, "enters"), "enters must be true or false")
            return None
        spec: dict[str, Any] = {"enters": value}
        if not value:
            for key in ("arm", "times", "at"):
                if key in entry:
                    self.problem((*path, key), f"{key} goes with enters: true", key=True)
            return spec
        arm = entry.get("arm")
        if arm is not None:
            if arm not in ("treatment", "holdout"):
                self.problem((*path, "arm"), "arm must be treatment or holdout")
            spec["arm"] = arm
        times = entry.get("times")
        if times is not None:
            if isinstance(times, bool) or not isinstance(times, int) or times < 1:
                self.problem((*path, "times"), "times must be a whole number of entries, 1 or more")
            spec["times"] = times
        self.timing(entry, path, start, spec)
        return spec

    def message(self, kind: str, value: Any, path: Path_, start: datetime) -> dict[str, Any] | None:
        if value is False:
            return {"count": 0}
        entry = self.mapping(value, path, kind)
        if entry is None:
            return None
        extra: tuple[str, ...] = ("contains", "subject") if kind == "sent" else ("reason",)
        fields = ("step", "channel", "at", "within", "count", *extra)
        self.keys(entry, path, fields, kind)
        spec: dict[str, Any] = {}
        for key in ("step", "channel", "subject", "reason"):
            if key in entry:
                spec[key] = self.text(entry[key], (*path, key), key)
        if "contains" in entry:
            contains = entry["contains"]
            items = contains if isinstance(contains, list) else [contains]
            if not items or not all(isinstance(c, str) and c for c in items):
                self.problem((*path, "contains"), "contains must be text, or a list of texts")
            spec["contains"] = tuple(items)
        if "count" in entry:
            count = entry["count"]
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                self.problem((*path, "count"), "count must be a whole number, 0 or more")
            spec["count"] = count
        self.timing(entry, path, start, spec)
        return spec

    def exits(self, value: Any, path: Path_, start: datetime) -> dict[str, Any] | None:
        if value is False:
            return {"inside": True}
        if isinstance(value, str):
            if value not in EXIT_WORDS:
                close = difflib.get_close_matches(value, EXIT_WORDS, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.problem(
                    path,
                    f"exits: {value!r} is not one of {', '.join(EXIT_WORDS)}{hint} (for a step or a "
                    "reason: exits: {step: ..., answer: yes} or exits: {reason: ...})",
                )
                return None
            return {"how": value}
        entry = self.mapping(value, path, "exits")
        if entry is None:
            return None
        self.keys(entry, path, ("how", "step", "answer", "reason", "at", "within"), "exits")
        spec: dict[str, Any] = {}
        if "how" in entry:
            if entry["how"] not in EXIT_WORDS:
                self.problem((*path, "how"), f"how must be one of {', '.join(EXIT_WORDS)}")
            spec["how"] = entry["how"]
        for key in ("step", "reason"):
            if key in entry:
                spec[key] = self.text(entry[key], (*path, key), key)
        if "answer" in entry:
            answer = entry["answer"]
            answer = {True: "yes", False: "no"}.get(answer, answer) if isinstance(answer, bool) else answer
            if answer not in ("yes", "no"):
                self.problem((*path, "answer"), "answer must be yes or no")
            if "step" not in entry:
                self.problem((*path, "answer"), "answer goes with step: the branch that answered", key=True)
            spec["answer"] = answer
        self.timing(entry, path, start, spec)
        return spec

    def still_in(self, value: Any, path: Path_) -> dict[str, Any] | None:
        if value is True:
            return {}
        if isinstance(value, str) and value:
            return {"step": value}
        self.problem(path, "still_in must be a step id, or true (at any step)")
        return None

    def converted(self, value: Any, path: Path_, start: datetime) -> dict[str, Any] | None:
        if isinstance(value, bool):
            return {"converted": value}
        entry = self.mapping(value, path, "converted")
        if entry is None:
            return None
        self.keys(entry, path, ("revenue", "at", "within"), "converted")
        spec: dict[str, Any] = {"converted": True}
        if "revenue" in entry:
            revenue = entry["revenue"]
            if isinstance(revenue, bool) or not isinstance(revenue, int | float):
                self.problem((*path, "revenue"), "revenue must be a number")
            spec["revenue"] = revenue
        self.timing(entry, path, start, spec)
        return spec
