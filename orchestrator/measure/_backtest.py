"""A backtest's report, read from its scratch store, and two reports compared.

``backtest_report`` reads what the journeys did in a backtest's store (``orchestrator.engine.backtest``
fills it): per day, entries, messages by journey, step and channel, suppressions by reason and caps hit;
customers in several journeys (an overlap matrix); the messages each customer was sent per week; and the
conversions observed after entry. The report is plain data with stable keys (``BacktestReport.data``, what
``--format json`` prints and ``--save`` keeps); ``backtest_sections`` lays it out as titled tables, which
the command line prints and the HTML page (``_backtest_html``) draws, so both show the same figures.

Conversions here are observed, not caused: the customers' behaviour is the recorded past, which never saw
the backtest's messages, so treated and held-out customers behave alike and no lift can be read off it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from orchestrator.clock import from_us
from orchestrator.store import (
    Store,
    conversions_per_arm,
    customer_count,
    customers_in_journeys,
    entries_by_day,
    instance_outcomes,
    journey_overlap,
    ledger_by_day,
    sent_per_customer_week,
)

DAY_US = 86_400_000_000
WEEK_US = 7 * DAY_US
CAPPED = "capped by policy"
#: The buckets of the messages-per-customer-per-week distribution.
BUCKETS = ("0", "1", "2", "3", "4", "5+")
OBSERVED_NOTE = (
    "observed, not caused: the customers' behaviour is the recorded past, which never saw these messages, "
    "so this is no lift (treated and held-out entries convert alike here); entries whose goal window was "
    "still open at the end are counted"
)
STATUSES = ("sent", "suppressed", "failed", "queued", "other")


@dataclass(frozen=True)
class BacktestReport:
    """What a backtest found. ``data`` is the whole report as JSON-ready data with stable keys."""

    data: dict[str, Any]

    def with_timings(self, seconds: Mapping[str, float], delivered: int | None = None) -> BacktestReport:
        """The same report with the run's timings (and how many messages the backtest's adapter took)."""
        data = dict(self.data)
        timings = {k: round(v, 3) for k, v in seconds.items()}
        timings["total"] = round(sum(seconds.values()), 3)
        data["timings"] = timings
        if delivered is not None:
            data["totals"] = {**data["totals"], "handed_to_adapter": delivered}
        return BacktestReport(data)

    @property
    def totals(self) -> dict[str, Any]:
        return dict(self.data["totals"])


def _iso_day(us: int) -> str:
    return from_us(us).date().isoformat()


def _iso(us: int) -> str:
    return from_us(us).isoformat().replace("+00:00", "Z")


def backtest_report(
    store: Store,
    journeys: Sequence[str],
    *,
    start_us: int,
    end_us: int,
    tick_us: int,
    events: int,
    history_events: int,
    label: str = "",
) -> BacktestReport:
    """The report of the backtest whose store is ``store``, over the window ``start_us`` to ``end_us``
    (exclusive), ticked every ``tick_us``; ``events`` and ``history_events`` are the events replayed in all
    and those before the window. Days are 24-hour periods from the window's start."""
    n_days = max(1, -(-(end_us - start_us) // DAY_US))
    with store.connect() as conn:
        entries = entries_by_day(conn, start_us, DAY_US)
        ledger = ledger_by_day(conn, start_us, DAY_US)
        outcomes = instance_outcomes(conn)
        conversions = conversions_per_arm(conn)
        overlap = journey_overlap(conn)
        per_customer = customers_in_journeys(conn)
        customers = customer_count(conn)
        weekly = sent_per_customer_week(conn, start_us, WEEK_US)
    known = list(journeys) + sorted({e.journey_id for e in entries} - set(journeys))
    days: list[dict[str, Any]] = [
        {
            "date": _iso_day(start_us + d * DAY_US),
            "entries": {j: 0 for j in known},
            "entries_holdout": {j: 0 for j in known},
            "sent": {j: 0 for j in known},
            "suppressed": {},
            "caps_hit": 0,
            "failed": 0,
        }
        for d in range(n_days)
    ]
    for e in entries:
        day = days[min(e.day, n_days - 1)]
        day["entries"][e.journey_id] += e.count
        if e.holdout:
            day["entries_holdout"][e.journey_id] += e.count
    steps: dict[tuple[str, str, str], dict[str, Any]] = {}
    suppressions: dict[str, int] = {}
    by_day_step: dict[tuple[int, str, str, str], dict[str, int]] = {}
    for row in ledger:
        d = min(row.day, n_days - 1)
        status = row.status if row.status in STATUSES else "other"
        key = (row.journey_id, row.step, row.channel)
        figures = steps.setdefault(key, {s: 0 for s in STATUSES})
        figures[status] += row.count
        cell = by_day_step.setdefault((d, *key), {s: 0 for s in STATUSES})
        cell[status] += row.count
        day = days[d]
        if status == "sent":
            day["sent"][row.journey_id] = day["sent"].get(row.journey_id, 0) + row.count
        elif status == "suppressed":
            reason = row.reason or "suppressed"
            day["suppressed"][reason] = day["suppressed"].get(reason, 0) + row.count
            suppressions[reason] = suppressions.get(reason, 0) + row.count
            if reason.startswith(CAPPED):
                day["caps_hit"] += row.count
        elif status == "failed":
            day["failed"] += row.count
    messages = [
        {"journey": j, "step": s, "channel": c, **figures}
        for (j, s, c), figures in sorted(steps.items(), key=lambda kv: (_rank(known, kv[0][0]), kv[0][1:]))
    ]
    messages_by_day = [
        {"date": days[d]["date"], "journey": j, "step": s, "channel": c, **cell}
        for (d, j, s, c), cell in sorted(
            by_day_step.items(), key=lambda kv: (kv[0][0], _rank(known, kv[0][1]), kv[0][2:])
        )
    ]
    data: dict[str, Any] = {
        "kind": "backtest",
        "label": label,
        "window": {
            "from": _iso(start_us),
            "to": _iso(end_us),
            "tick_seconds": tick_us // 1_000_000,
            "ticks": -(-(end_us - start_us) // tick_us),
            "days": n_days,
        },
        "input": {"customers": customers, "events": events, "history_events": history_events},
        "journeys": known,
        "days": days,
        "messages": messages,
        "messages_by_day": messages_by_day,
        "suppressions": dict(sorted(suppressions.items(), key=lambda kv: (-kv[1], kv[0]))),
        "overlap": _overlap(known, overlap, per_customer),
        "messages_per_customer_week": _weekly(weekly, customers, start_us, end_us),
        "conversions": _conversions(known, outcomes, conversions),
        "outcomes": _outcomes(known, outcomes),
    }
    data["totals"] = _totals(data)
    return BacktestReport(data)


def _rank(known: Sequence[str], journey: str) -> int:
    return known.index(journey) if journey in known else len(known)


def _overlap(
    known: Sequence[str], pairs: Mapping[tuple[str, str], int], per_customer: np.ndarray
) -> dict[str, Any]:
    matrix = [[pairs.get((a, b), 0) for b in known] for a in known]
    return {
        "journeys": list(known),
        "matrix": matrix,
        "customers_in_any": len(per_customer),
        "customers_in_several": int((per_customer > 1).sum()),
    }


def _weekly(rows: np.ndarray, customers: int, start_us: int, end_us: int) -> dict[str, Any]:
    """The distribution of messages sent per customer per week, over every customer of the store and every
    full week of the window (the window itself when it is shorter than a week)."""
    full = (end_us - start_us) // WEEK_US
    weeks = max(full, 1)
    counts = rows[:, 2][rows[:, 1] < weeks] if len(rows) else np.zeros(0, np.int64)
    cells = customers * weeks
    histogram = np.bincount(counts, minlength=6) if len(counts) else np.zeros(6, np.int64)
    histogram[0] = cells - len(counts)
    distribution = {b: int(histogram[i]) for i, b in enumerate(BUCKETS[:-1])}
    distribution["5+"] = int(histogram[5:].sum())
    cumulative = np.cumsum(histogram)

    def quantile(q: float) -> int:
        if cells <= 0:
            return 0
        return int(np.searchsorted(cumulative, q * cells, side="left"))

    left_out = (end_us - start_us) - full * WEEK_US if full else 0
    return {
        "weeks": weeks,
        "week_starts": [_iso_day(start_us + w * WEEK_US) for w in range(weeks)],
        "days_left_out": left_out // DAY_US,
        "customer_weeks": int(cells),
        "distribution": distribution,
        "max": int(counts.max()) if len(counts) else 0,
        "mean": round(float(counts.sum()) / cells, 4) if cells else 0.0,
        "quantiles": {"p50": quantile(0.5), "p90": quantile(0.9), "p99": quantile(0.99)},
    }


def _conversions(known: Sequence[str], outcomes: Sequence[Any], conversions: Sequence[Any]) -> dict[str, Any]:
    rows = []
    for journey in known:
        for held, arm in ((False, "treated"), (True, "holdout")):
            entered = sum(o.count for o in outcomes if o.journey_id == journey and o.holdout == held)
            found = [c for c in conversions if c.journey_id == journey and c.holdout == held]
            converted = sum(c.count for c in found)
            revenue = sum(c.revenue for c in found)
            if entered or converted:
                rows.append(
                    {
                        "journey": journey,
                        "arm": arm,
                        "entries": entered,
                        "converted": converted,
                        "rate": round(converted / entered, 4) if entered else None,
                        "revenue": round(revenue, 2),
                    }
                )
    return {"note": OBSERVED_NOTE, "journeys": rows}


def _outcomes(known: Sequence[str], outcomes: Sequence[Any]) -> list[dict[str, Any]]:
    out = []
    for journey in known:
        counts = {s: 0 for s in ("active", "completed", "exited", "converted")}
        for o in outcomes:
            if o.journey_id == journey:
                counts[o.status] = counts.get(o.status, 0) + o.count
        out.append({"journey": journey, **counts})
    return out


def _totals(data: Mapping[str, Any]) -> dict[str, Any]:
    days = data["days"]
    messages = data["messages"]
    return {
        "entries": sum(sum(d["entries"].values()) for d in days),
        "entries_holdout": sum(sum(d["entries_holdout"].values()) for d in days),
        "sent": sum(m["sent"] for m in messages),
        "suppressed": sum(m["suppressed"] for m in messages),
        "caps_hit": sum(d["caps_hit"] for d in days),
        "failed": sum(m["failed"] for m in messages),
        "queued_at_end": sum(m["queued"] for m in messages),
        "converted": sum(r["converted"] for r in data["conversions"]["journeys"]),
        "customers_in_several_journeys": data["overlap"]["customers_in_several"],
    }


# ------------------------------------------------------------------------------------------ sections

Justify = Literal["left", "right"]


@dataclass(frozen=True)
class BacktestSection:
    """One titled table of a report, as the command line prints it and the HTML page draws it."""

    title: str
    columns: list[tuple[str, Justify]]
    rows: list[list[Any]]
    notes: list[str] = field(default_factory=list)


def _n(value: int) -> str:
    return f"{value:,}"


def as_report(report: BacktestReport | Mapping[str, Any]) -> dict[str, Any]:
    """The report's data, from a report or from its JSON (a saved report)."""
    return dict(report.data) if isinstance(report, BacktestReport) else dict(report)


def backtest_heading(report: BacktestReport | Mapping[str, Any]) -> list[str]:
    """The lines that introduce a report: the window, the ticks and what was replayed."""
    data = as_report(report)
    w, i, t = data["window"], data["input"], data["totals"]
    hours = w["tick_seconds"] / 3600
    every = f"{hours:g}h" if hours >= 1 else f"{w['tick_seconds']}s"
    label = f" ({data['label']})" if data.get("label") else ""
    lines = [
        f"Backtest{label}: {w['from']} to {w['to']}, {w['days']} days, "
        f"a tick every {every} ({_n(w['ticks'])} ticks)",
        f"Replayed {_n(i['events'])} events ({_n(i['history_events'])} before the window, as history) "
        f"of {_n(i['customers'])} customers; nothing was sent, "
        "the contact policy applied.",
        f"Entries {_n(t['entries'])} ({_n(t['entries_holdout'])} held out), messages sent {_n(t['sent'])}, "
        f"suppressed {_n(t['suppressed'])} (caps hit {_n(t['caps_hit'])}), failed {_n(t['failed'])}, "
        f"queued at the end {_n(t['queued_at_end'])}.",
    ]
    if not i["history_events"]:
        lines.append(
            "No events before the window: signals that look back (since, within=) start blind, so the first "
            "ticks enter customers a live engine would have entered earlier (start later for history)."
        )
    return lines


def backtest_sections(report: BacktestReport | Mapping[str, Any]) -> list[BacktestSection]:
    """The report as titled tables: per day, per step, suppressions, overlap, weekly messages, conversions
    and where the instances ended."""
    data = as_report(report)
    journeys: list[str] = data["journeys"]
    sections = []
    day_columns: list[tuple[str, Justify]] = [("day", "left")]
    day_columns += [(f"entered {j}", "right") for j in journeys]
    day_columns += [(f"sent {j}", "right") for j in journeys]
    day_columns += [("suppressed", "right"), ("caps hit", "right"), ("failed", "right")]
    day_rows = [
        [d["date"]]
        + [_n(d["entries"].get(j, 0)) for j in journeys]
        + [_n(d["sent"].get(j, 0)) for j in journeys]
        + [_n(sum(d["suppressed"].values())), _n(d["caps_hit"]), _n(d["failed"])]
        for d in data["days"]
    ]
    sections.append(
        BacktestSection("Per day", day_columns, day_rows, ["sent messages by the day they were sent"])
    )
    sections.append(
        BacktestSection(
            "Messages by journey, step and channel",
            [
                ("journey", "left"),
                ("step", "left"),
                ("channel", "left"),
                ("sent", "right"),
                ("suppressed", "right"),
                ("failed", "right"),
                ("queued at end", "right"),
            ],
            [
                [
                    m["journey"],
                    m["step"],
                    m["channel"],
                    _n(m["sent"]),
                    _n(m["suppressed"]),
                    _n(m["failed"]),
                    _n(m["queued"]),
                ]
                for m in data["messages"]
            ],
            ["per day and step in the JSON output (messages_by_day) and the HTML page"],
        )
    )
    if data["suppressions"]:
        sections.append(
            BacktestSection(
                "Suppressions by reason",
                [("reason", "left"), ("messages", "right")],
                [[reason, _n(n)] for reason, n in data["suppressions"].items()],
            )
        )
    overlap = data["overlap"]
    sections.append(
        BacktestSection(
            "Customers in more than one journey (customers who entered both)",
            [("", "left"), *((j, "right") for j in overlap["journeys"])],
            [
                [a] + [_n(v) for v in row]
                for a, row in zip(overlap["journeys"], overlap["matrix"], strict=True)
            ],
            [
                f"{_n(overlap['customers_in_several'])} of the {_n(overlap['customers_in_any'])} "
                "customers who entered a journey entered more than one"
            ],
        )
    )
    weekly = data["messages_per_customer_week"]
    q = weekly["quantiles"]
    total = weekly["customer_weeks"] or 1
    left_out = f"; the last {weekly['days_left_out']} days are left out" if weekly["days_left_out"] else ""
    sections.append(
        BacktestSection(
            "Messages sent per customer per week",
            [("messages", "left"), ("customer-weeks", "right"), ("share", "right")],
            [[b, _n(n), f"{n / total:.1%}"] for b, n in weekly["distribution"].items()],
            [
                f"every customer, {weekly['weeks']} week(s) from {weekly['week_starts'][0]}{left_out}; "
                f"median {q['p50']}, 90th percentile {q['p90']}, 99th {q['p99']}, max {weekly['max']}, "
                f"mean {weekly['mean']:g}"
            ],
        )
    )
    conversions = data["conversions"]
    sections.append(
        BacktestSection(
            "Conversions seen after entry (observed, not caused)",
            [
                ("journey", "left"),
                ("arm", "left"),
                ("entries", "right"),
                ("converted", "right"),
                ("rate", "right"),
                ("revenue", "right"),
            ],
            [
                [
                    r["journey"],
                    r["arm"],
                    _n(r["entries"]),
                    _n(r["converted"]),
                    "-" if r["rate"] is None else f"{r['rate']:.1%}",
                    f"{r['revenue']:,.2f}",
                ]
                for r in conversions["journeys"]
            ],
            [conversions["note"]],
        )
    )
    sections.append(
        BacktestSection(
            "Where the entries ended",
            [
                ("journey", "left"),
                ("active", "right"),
                ("completed", "right"),
                ("exited", "right"),
                ("converted", "right"),
            ],
            [
                [o["journey"], _n(o["active"]), _n(o["completed"]), _n(o["exited"]), _n(o["converted"])]
                for o in data["outcomes"]
            ],
        )
    )
    return sections


# ------------------------------------------------------------------------------------------ comparing

COMPARED = (
    ("entries", "entries"),
    ("entries_holdout", "entries held out"),
    ("sent", "messages sent"),
    ("suppressed", "suppressed"),
    ("caps_hit", "caps hit"),
    ("failed", "failed"),
    ("queued_at_end", "queued at the end"),
    ("converted", "conversions observed"),
    ("customers_in_several_journeys", "customers in several journeys"),
)


def change_text(before: float, after: float) -> str:
    """``4,210 -> 3,150 (-25%)``; ``(new)`` from zero."""
    if before == after:
        return f"{_n(int(before))} (same)"
    ratio = 0.0 if before == 0 else (after - before) / before
    change = "new" if before == 0 else f"{ratio:+.1%}" if abs(ratio) < 0.01 else f"{ratio:+.0%}"
    return f"{_n(int(before))} -> {_n(int(after))} ({change})"


def compare_backtests(
    first: BacktestReport | Mapping[str, Any], second: BacktestReport | Mapping[str, Any]
) -> dict[str, Any]:
    """Two backtests of the same window side by side: both reports and the differences of their totals,
    per journey and per step (``{"a": ..., "b": ..., "differences": ...}``)."""
    a, b = as_report(first), as_report(second)
    totals = {
        key: {
            "a": a["totals"].get(key, 0),
            "b": b["totals"].get(key, 0),
            "change": change_text(a["totals"].get(key, 0), b["totals"].get(key, 0)),
        }
        for key, _ in COMPARED
    }
    per_step: dict[tuple[str, str, str], list[int]] = {}
    for side, data in enumerate((a, b)):
        for m in data["messages"]:
            per_step.setdefault((m["journey"], m["step"], m["channel"]), [0, 0])[side] += m["sent"]
    steps = [
        {"journey": j, "step": s, "channel": c, "a": x, "b": y, "change": change_text(x, y)}
        for (j, s, c), (x, y) in per_step.items()
    ]
    weekly = {
        side: data["messages_per_customer_week"]["quantiles"]
        | {"max": data["messages_per_customer_week"]["max"]}
        for side, data in (("a", a), ("b", b))
    }
    return {
        "kind": "backtest_comparison",
        "a": a,
        "b": b,
        "differences": {"totals": totals, "sent_by_step": steps, "per_customer_week": weekly},
    }


def comparison_sections(comparison: Mapping[str, Any]) -> list[BacktestSection]:
    """A comparison as tables: the totals side by side, then messages sent per step."""
    a, b = comparison["a"], comparison["b"]
    names = (a.get("label") or "a", b.get("label") or "b")
    diffs = comparison["differences"]
    totals = BacktestSection(
        "Side by side",
        [("", "left"), (names[0], "right"), (names[1], "right"), ("change", "left")],
        [
            [
                label,
                _n(diffs["totals"][key]["a"]),
                _n(diffs["totals"][key]["b"]),
                diffs["totals"][key]["change"],
            ]
            for key, label in COMPARED
        ],
    )
    weekly = diffs["per_customer_week"]
    totals.rows.append(
        [
            "messages per customer-week: p90 / max",
            f"{weekly['a']['p90']} / {weekly['a']['max']}",
            f"{weekly['b']['p90']} / {weekly['b']['max']}",
            "",
        ]
    )
    steps = BacktestSection(
        "Messages sent by journey, step and channel",
        [
            ("journey", "left"),
            ("step", "left"),
            ("channel", "left"),
            (names[0], "right"),
            (names[1], "right"),
            ("change", "left"),
        ],
        [
            [s["journey"], s["step"], s["channel"], _n(s["a"]), _n(s["b"]), s["change"]]
            for s in diffs["sent_by_step"]
        ],
    )
    return [totals, steps]
