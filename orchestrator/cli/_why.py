"""``orchestrator why CUSTOMER`` (what happened to one customer, and why: ``engine._explain``) and
``orchestrator preview JOURNEY STEP --customer ID`` (exactly what a send step would send that customer now,
without sending: ``engine._preview``). Here: the arguments, and the answers as text or JSON.
"""

from __future__ import annotations

import json
from datetime import datetime

from orchestrator.channels import count_segments
from orchestrator.cli._errors import Failure, UsageError
from orchestrator.cli._settings import Args
from orchestrator.cli._stores import existing_store
from orchestrator.clock import SimulatedClock, SystemClock, parse_instant, to_us
from orchestrator.engine import (
    PreviewError,
    UnknownCustomer,
    explain,
    iso,
    load_workspace,
    render_step,
    send_step,
)
from orchestrator.language import SpecError

# ---------------------------------------------------------------------------------------------- why


def run_why(args: Args) -> int:
    store = existing_store(args.db, "the store is empty: nothing has run yet")
    try:
        report = explain(store, args.customer, args.journey).to_dict()
    except UnknownCustomer as exc:
        raise Failure(str(exc)) from None
    finally:
        store.dispose()
    if args.format == "json":
        print(json.dumps(report, indent=2))
        return 0
    said = {True: "yes", False: "NO", None: "none on record"}
    consent = ", ".join(f"{k} {said[v]}" for k, v in report["consent"].items())
    print(f"customer {report['customer']} (consent: {consent})")
    if not report["entries"]:
        print("  never entered" + (f" {args.journey}" if args.journey else " any journey"))
    for e in report["entries"]:
        reason = f" ({e['arm_reason']})" if e["arm_reason"] else ""
        print(f"  {e['journey']} v{e['version']}: entered {e['entered']}, arm {e['arm']}{reason}")
        print(f"    {e['entered_because']}")
        for c in e["choices"]:
            print(f"    {c['step']} chose to send at {c['send_at']}: {c['words']}")
        for m in e["messages"]:
            when = f"sent {m['sent']}" if m["sent"] else f"queued {m['queued']}"
            why = f": {m['reason']}" if m["reason"] else ""
            retry = f", next attempt {m['next_attempt']}" if m["next_attempt"] else ""
            print(f"    {m['step']} ({m['channel']}) {m['status']}, {when}{why}{retry}")
        if e["status"] == "active":
            doing = f" ({e['step_words']})" if e["step_words"] else ""
            print(f"    at step {e['step']}{doing} since {e['at_step_since']}, next look {e['next_look']}")
        else:
            print(f"    {e['status']} {e['finished']}: {e['finish_words']}")
    for c in report["conversions"]:
        goal = " ".join(part for part in (c["event"] or c["condition"], c["window"]) if part)
        event = f" ({goal})" if goal else ""
        print(
            f"  converted {c['at']}: {c['journey']} v{c['version']}, arm {c['arm']}{event}, "
            f"revenue {c['revenue']:.2f}"
        )
    for s in report["suppressions"]:
        print(f"  {s['channel']} address {s['address']} suppressed since {s['since']}: {s['reason']}")
    return 0


# ---------------------------------------------------------------------------------------------- preview


def run_preview(args: Args) -> int:
    try:
        workspace = load_workspace(args.journeys, args.templates)
    except SpecError as exc:
        raise Failure(f"the journeys are not valid:\n{exc}") from None
    try:
        plan, step = send_step(workspace, args.journey, args.step)
    except PreviewError as exc:
        raise UsageError(str(exc)) from None
    assert step.send is not None
    try:
        clock = SystemClock() if args.now is None else SimulatedClock(parse_instant(args.now))
    except ValueError as exc:
        raise UsageError(f"--now {args.now!r}: {exc}") from None
    store = existing_store(args.db, "the store is empty: nothing has run yet")
    try:
        row = render_step(workspace, store, args.journey, args.step, clock, args.customer)
    except PreviewError as exc:  # the journey and step exist: the customer does not
        raise Failure(str(exc)) from None
    finally:
        store.dispose()
    # Shown as ``why`` shows instants, and without the store's key of the customer.
    row.pop("customer_key", None)
    row["at"] = iso(to_us(datetime.fromisoformat(row["at"])))
    if step.send.channel == "sms" and row["body"] is not None:
        segments = count_segments(row["body"])
        row["segments"] = {"encoding": segments.encoding, "count": segments.segments}
    if args.format == "json":
        print(json.dumps(row, indent=2))
    else:
        print(f"{plan.id}/{step.id} for {args.customer} on {step.send.channel} to {row['recipient'] or '-'}")
        if row["status"] != "queued":
            print(f"  would not be sent: {row['status']}: {row['reason']}")
        for part in ("subject", "title", "link", "body", "html"):
            if row.get(part) is not None:
                print(f"--- {part}\n{row[part]}")
        if "segments" in row:
            print(f"--- {row['segments']['count']} SMS segment(s), {row['segments']['encoding']}")
    return 0 if row["status"] == "queued" else 1
