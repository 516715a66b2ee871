"""``orchestrator why CUSTOMER`` (what happened to one customer, and why) and ``orchestrator preview JOURNEY
STEP --customer ID`` (exactly what a send step would send that customer now, without sending).

``why`` reads only the store: the customer's entries (with holdout arm and the reason it was given), the
step each instance is at or how it finished, every ledger row (status, reason, attempts, when it was queued
and sent, a pending delay), the suppression list entries of the customer's addresses and the conversions.
The store keeps no row per step moved through: the steps shown are the sends (each a ledger row with its
time), the current step (since when) and the exit.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from orchestrator.channels.base import ChannelRouter
from orchestrator.channels.sms import count_segments
from orchestrator.cli.errors import Failure, UsageError
from orchestrator.cli.settings import Args
from orchestrator.clock import SimulatedClock, SystemClock, parse_instant, to_us
from orchestrator.durations import US_PER_SECOND
from orchestrator.engine.render import message_row
from orchestrator.engine.tick import Engine
from orchestrator.engine.workspace import load_workspace
from orchestrator.language import SpecError
from orchestrator.language.channels import CONSENT_CHANNELS
from orchestrator.language.plan import ENTRY
from orchestrator.store import Store, open_store
from orchestrator.store.customers import customer_records


def _iso(us: int | None) -> str | None:
    if us is None:
        return None
    return datetime.fromtimestamp(us / US_PER_SECOND, UTC).isoformat().replace("+00:00", "Z")


def _store(url: str | None) -> Store:
    try:
        store = open_store(url, create=False)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    if not store.is_initialised():
        store.dispose()
        raise UsageError("the store is empty: nothing has run yet")
    return store


# ---------------------------------------------------------------------------------------------- why


def explain(store: Store, customer_id: str, journey: str | None = None) -> dict[str, Any]:
    """Everything the store says about one customer's journeys (see the module docstring)."""
    only = " AND {col} = :j" if journey else ""
    params: dict[str, Any] = {"c": customer_id, "j": journey}
    with store.connect() as conn:
        found = conn.execute(
            text(
                "SELECT key, email, phone, push_token, consent_email, consent_sms, consent_push "
                "FROM customers WHERE id = :c"
            ),
            params,
        ).first()
        if found is None:
            raise Failure(f"no customer {customer_id!r} in the store")
        params["k"] = int(found[0])
        entries = conn.execute(
            text(
                "SELECT i.id, i.journey_id, i.version, i.entered_us, i.holdout, i.state, i.status, "
                "i.since_us, i.wake_at_us, i.exited_us, i.exit_reason, i.entry_key, h.arm, h.reason, h.layer "
                "FROM journey_instances i LEFT JOIN holdout_assignments h ON h.journey_id = i.journey_id "
                "AND h.customer_key = i.customer_key WHERE i.customer_key = :k"
                + only.format(col="i.journey_id")
                + " ORDER BY i.entered_us, i.id"
            ),
            params,
        ).all()
        messages = conn.execute(
            text(
                "SELECT instance_id, journey_id, version, step, channel, status, reason, attempts, "
                "created_us, sent_us, next_attempt_us, recipient, provider_id, transactional FROM messages "
                "WHERE customer_key = :k" + only.format(col="journey_id") + " ORDER BY created_us, id"
            ),
            params,
        ).all()
        conversions = conn.execute(
            text(
                "SELECT instance_id, journey_id, converted_us, revenue, holdout FROM conversions "
                "WHERE customer_key = :k" + only.format(col="journey_id") + " ORDER BY converted_us"
            ),
            params,
        ).all()
        addresses = list(zip(CONSENT_CHANNELS, found[1:4], strict=True))
        suppressions = [
            {"channel": r[0], "address": r[1], "reason": r[2], "since": _iso(r[3])}
            for channel, address in addresses
            if address
            for r in conn.execute(
                text(
                    "SELECT channel, address, reason, created_us FROM suppressions "
                    "WHERE channel = :ch AND address = :a"
                ),
                {"ch": channel, "a": address},
            ).all()
        ]
    by_instance: dict[int, list[dict[str, Any]]] = {}
    for m in messages:
        by_instance.setdefault(int(m[0]), []).append(
            {
                "step": m[3],
                "channel": m[4],
                "status": m[5],
                "reason": m[6],
                "attempts": int(m[7] or 0),
                "queued": _iso(m[8]),
                "sent": _iso(m[9]),
                "next_attempt": _iso(m[10]) if m[5] == "queued" else None,
                "recipient": m[11],
                "transactional": bool(m[13]),
            }
        )
    converted = {int(c[0]): {"at": _iso(c[2]), "revenue": float(c[3])} for c in conversions}
    out_entries = []
    for e in entries:
        arm = e[12] or ("holdout" if e[4] else "treatment")
        out_entries.append(
            {
                "journey": e[1],
                "version": int(e[2]),
                "entered": _iso(e[3]),
                "arm": arm,
                "arm_reason": e[13] or ("held out: no messages" if e[4] else None),
                "holdout_layer": e[14],
                "correlation_key": e[11],
                "status": e[6],
                "step": e[5] if e[6] == "active" else None,
                "at_step_since": _iso(e[7]) if e[6] == "active" else None,
                "next_look": _iso(e[8]) if e[6] == "active" else None,
                "finished": _iso(e[9]),
                "finish_reason": e[10],
                "messages": by_instance.get(int(e[0]), []),
                "conversion": converted.get(int(e[0])),
            }
        )
    return {
        "customer": customer_id,
        # None: no consent on record for the channel (the policy's ``consent.missing`` decides).
        "consent": {
            channel: None if value is None else bool(value)
            for channel, value in zip(CONSENT_CHANNELS, found[4:7], strict=True)
        },
        "entries": out_entries,
        "suppressions": suppressions,
    }


def run_why(args: Args) -> int:
    store = _store(args.db)
    try:
        report = explain(store, args.customer, args.journey)
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
        for m in e["messages"]:
            when = f"sent {m['sent']}" if m["sent"] else f"queued {m['queued']}"
            why = f": {m['reason']}" if m["reason"] else ""
            retry = f", next attempt {m['next_attempt']}" if m["next_attempt"] else ""
            print(f"    {m['step']} ({m['channel']}) {m['status']}, {when}{why}{retry}")
        if e["status"] == "active":
            print(f"    at step {e['step']} since {e['at_step_since']}, next look {e['next_look']}")
        else:
            print(f"    {e['status']} {e['finished']}: {e['finish_reason']}")
        if e["conversion"]:
            print(f"    converted {e['conversion']['at']} (revenue {e['conversion']['revenue']:g})")
    for s in report["suppressions"]:
        print(f"  {s['channel']} address {s['address']} suppressed since {s['since']}: {s['reason']}")
    return 0


# ---------------------------------------------------------------------------------------------- preview


def run_preview(args: Args) -> int:
    try:
        workspace = load_workspace(args.journeys, args.templates)
        plan = workspace.plan(args.journey)
    except SpecError as exc:
        raise Failure(f"the journeys are not valid:\n{exc}") from None
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None
    step = next((s for s in plan.steps if s.id == args.step), None)
    if step is None or step.send is None:
        sends = ", ".join(s.id for s in plan.steps if s.send is not None) or "none"
        raise UsageError(f"{plan.id} has no send step {args.step!r} (its send steps: {sends})")
    try:
        clock = SystemClock() if args.now is None else SimulatedClock(parse_instant(args.now))
    except ValueError as exc:
        raise UsageError(f"--now {args.now!r}: {exc}") from None
    store = _store(args.db)
    try:
        with store.connect() as conn:
            key = conn.execute(text("SELECT key FROM customers WHERE id = :c"), {"c": args.customer}).scalar()
            if key is None:
                raise Failure(f"no customer {args.customer!r} in the store")
            customer = customer_records(conn, [int(key)])[int(key)]
            # The customer's latest entry into the journey gives the entry event and captured events.
            data_text = conn.execute(
                text(
                    "SELECT data FROM journey_instances WHERE journey_id = :j AND customer_key = :k "
                    "ORDER BY entered_us DESC, id DESC LIMIT 1"
                ),
                {"j": plan.id, "k": int(key)},
            ).scalar()
        engine = Engine(store, workspace, ChannelRouter(), clock)
        metrics = engine.metrics_now(plan) if plan.metrics else {}
        values = {name: _plain(column[int(key)]) for name, column in metrics.items()}
    finally:
        store.dispose()
    data = json.loads(data_text) if data_text else {}
    roots = [ENTRY, *plan.captures] if plan.entry.kind == "event" else list(plan.captures)
    row = message_row(
        renderer=workspace.renderer(plan.id),
        send=step.send,
        customer=customer,
        metrics=values,
        journey={"id": plan.id, "version": plan.version, "step": step.id},
        extra={root: data.get(root, {}) for root in roots},
        base={"customer": args.customer, "journey": plan.id, "step": step.id, "at": _iso(to_us(clock.now()))},
    )
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


def _plain(value: Any) -> Any:
    from orchestrator.signals import to_python

    return to_python(value)
