"""``orchestrator audience JOURNEY``: how many customers a journey would reach now (``engine._audience``).
Here: the arguments, and the estimate as a short summary and a breakdown table, or as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.cli._errors import Failure, UsageError
from orchestrator.cli._settings import Args
from orchestrator.cli._stores import existing_store
from orchestrator.clock import SystemClock, parse_instant, to_us
from orchestrator.engine import UnknownJourney, Workspace, audience, load_workspace
from orchestrator.language import SpecError


def _workspace(args: Args) -> Workspace:
    """The workspace's journeys, or only the file ``JOURNEY`` names."""
    as_file = Path(args.journey)
    paths = (
        [str(as_file)] if as_file.suffix in (".yaml", ".yml") and as_file.is_file() else list(args.journeys)
    )
    try:
        workspace = load_workspace(paths, args.templates)
    except SpecError as exc:
        raise Failure(f"the journeys are not valid:\n{exc}") from None
    if paths == [str(as_file)] and len(workspace.plans) == 1:
        args.journey = workspace.plans[0].id
    return workspace


def run_audience(args: Args) -> int:
    workspace = _workspace(args)
    try:
        now_us = to_us(SystemClock().now() if args.now is None else parse_instant(args.now))
    except ValueError as exc:
        raise UsageError(f"--now {args.now!r}: {exc}") from None
    store = existing_store(args.db, "the store is empty: ingest customers and events first")
    try:
        report = audience(
            store,
            workspace,
            args.journey,
            now_us,
            by=args.by,
            top=args.top,
            global_holdout_percent=args.global_holdout,
        ).to_dict()
    except UnknownJourney as exc:
        raise UsageError(str(exc)) from None
    finally:
        store.dispose()
    if args.format == "json":
        print(json.dumps(report, indent=2))
    else:
        _print(report)
    return 0


def _n(value: int) -> str:
    return f"{value:,}"


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _print(r: dict[str, Any]) -> None:
    from orchestrator.cli._output import print_table

    print(f"{r['journey']} v{r['version']} at {r['now']}: {_n(r['customers'])} customers in the store")
    if r["entry"] == "event":
        print(f"  sent the entry event in the last {r['window']}: {_n(r['match_now'])}")
    else:
        print(f"  match the entry condition now: {_n(r['match_now'])}")
    why_not = {
        "exit_when_holds": "exit_when holds",
        "matched_at_last_tick": "matched already at the last tick",
        "inside_already": "inside already",
        "reentry_not_allowed": "re-entry not allowed yet",
    }
    left_out = [f"{_n(v)} {why_not[k]}" for k, v in r["not_entering"].items() if v]
    said = f" (not entering: {', '.join(left_out)})" if left_out else ""
    print(f"  would enter at the next tick: {_n(r['would_enter'])} customers{said}")
    held = f"  held out {_n(r['held_out'])} ({_share(r['held_out'], r['would_enter'])})"
    if r["held_out_global"]:
        held += f", {_n(r['held_out_global'])} of them by the global holdout"
    print(f"{held}; treated {_n(r['treated'])}")
    channels = sorted({s["channel"] for s in r["first_sends"]})
    stops = []
    if r["no_send_step"]:
        stops.append(f"leave before any send {_n(r['no_send_step'])}")
    consent = "/".join(c for c in channels if c != "webhook") or "channel"
    stops.append(f"no {consent} consent {_n(r['no_consent'])}")
    address = f"no address {_n(r['no_address'])}"
    if r["suppressed_address"]:
        address += f" ({_n(r['suppressed_address'])} on the suppression list)"
    stops.append(address)
    stops.append(f"stopped by policy {_n(r['stopped_by_policy'])}")
    print(f"    of them: {'; '.join(stops)}")
    for rule in r["policy_rules"]:
        print(f"      {_n(rule['customers']):>7}  {rule['rule']}")
    later = (
        f" ({_n(r['delayed_by_quiet_hours'])} of them after quiet hours)"
        if r["delayed_by_quiet_hours"]
        else ""
    )
    print(f"  would be messaged: {_n(r['would_be_messaged'])}{later}")
    if r["first_sends"]:
        print("  first message:")
        print_table(
            [("step", "left"), ("channel", "left"), ("customers", "right"), ("would be messaged", "right")],
            [
                (s["step"], s["channel"], _n(s["customers"]), _n(s["would_be_messaged"]))
                for s in r["first_sends"]
            ],
            indent=4,
        )
    if r["by"] is not None:
        print(f"by {r['by']}:")
        headers = [
            "match now",
            "would enter",
            "held out",
            "treated",
            "no consent",
            "no address",
            "policy",
            "messaged",
        ]
        names = [
            "match_now",
            "would_enter",
            "held_out",
            "treated",
            "no_consent",
            "no_address",
            "stopped_by_policy",
            "would_be_messaged",
        ]
        print_table(
            [(r["by"], "left"), *((h, "right") for h in headers)],
            [(g["value"], *(_n(g["counts"][k]) for k in names)) for g in r["breakdown"]],
            indent=4,
        )
    if r["notes"]:
        print("estimated:")
        for note in r["notes"]:
            print(f"  - {note}")
