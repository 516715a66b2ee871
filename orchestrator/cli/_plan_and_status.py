"""``orchestrator plan`` (what a changed journey file would do to the customers inside:
``engine._plan_report``) and ``orchestrator status`` (what the engine holds: instances, due waits, the
outbox backlog, the last tick: ``engine._status``). Here: the arguments, and the reports as text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.cli._errors import Failure, UsageError
from orchestrator.cli._instants import as_of_us
from orchestrator.cli._settings import Args
from orchestrator.clock import SystemClock, to_us
from orchestrator.durations import US_PER_SECOND, parse_duration
from orchestrator.engine import Workspace, load_workspace, plan_report, status_report
from orchestrator.language import JourneyPlan, SpecError
from orchestrator.store import Store, open_store


def _open(url: str | None) -> Store | None:
    try:
        store = open_store(url, create=False)
    except FileNotFoundError:
        return None
    if not store.is_initialised():
        store.dispose()
        return None
    return store


# ---------------------------------------------------------------------------------------------- plan


def _workspace(args: Args) -> tuple[Workspace, JourneyPlan]:
    paths = list(args.journeys)
    as_file = Path(args.journey)
    if as_file.suffix in (".yaml", ".yml") and as_file.is_file():
        paths = [str(as_file)]
    try:
        workspace = load_workspace(paths, args.templates)
    except SpecError as exc:
        raise Failure(f"the journeys are not valid:\n{exc}") from None
    if len(workspace.plans) == 1 and paths == [str(as_file)]:
        return workspace, workspace.plans[0]
    try:
        return workspace, workspace.plan(args.journey)
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None


def run_plan(args: Args) -> int:
    workspace, plan = _workspace(args)
    store = _open(args.db)
    try:
        report = plan_report(store, workspace, plan, SystemClock()).to_dict()
    finally:
        if store is not None:
            store.dispose()
    if args.format == "json":
        print(json.dumps(report, indent=2))
    else:
        _print_plan(report)
    return 1 if report["problems"] else 0


def _print_plan(report: dict[str, Any]) -> None:
    from orchestrator.cli._output import print_table

    stored = ", ".join(str(v) for v in report["stored_versions"]) or "none"
    lines = [
        f"journey {report['journey']}: version {report['version']} in {report['file']}; versions that ran "
        f"here: {stored}",
    ]
    status = report["status"]
    if status == "new journey":
        lines.append("  it has not run in this store: nobody is inside yet")
    elif status == "unchanged":
        lines.append(f"  version {report['version']} is what runs now; nothing changes")
    elif status == "new version":
        lines.append(f"  at the next tick, new entrants follow version {report['version']}")
    for problem in report["problems"]:
        lines.append(f"  problem: {problem}")
    fates = report["fates"]
    if fates:
        lines.append("  customers inside:")
    elif status != "new journey":
        lines.append("  nobody is inside the journey")
    print("\n".join(lines))
    if fates:
        print_table(
            [("version", "right"), ("step", "left"), ("customers", "right"), ("what happens", "left")],
            [(f["version"], f["state"], f["customers"], f["note"]) for f in fates],
            indent=4,
        )


# ---------------------------------------------------------------------------------------------- status


def run_status(args: Args) -> int:
    store = _open(args.db)
    if store is None:
        raise Failure("no store with engine tables here; ingest data and run the engine first")
    if getattr(args, "journey", None) is not None:
        return _journey_status(store, args)
    now_us = as_of_us(args.now)
    stale_after = None
    if args.stale_after is not None:
        try:
            stale_after = round(parse_duration(args.stale_after).total_seconds() * US_PER_SECOND)
        except (ValueError, OverflowError) as exc:
            raise UsageError(f"--stale-after {args.stale_after!r}: {exc}") from None
    clock_us = now_us if now_us is not None else to_us(SystemClock().now())
    try:
        report = status_report(store, clock_us, now_us=now_us, stale_after_us=stale_after).to_dict()
    finally:
        store.dispose()
    if args.format == "json":
        print(json.dumps(report, indent=2))
    else:
        _print_status(report)
    return 0 if report["health"]["ok"] else 1  # for monitoring: a failed journey, or no recent tick


def _print_status(report: dict[str, Any]) -> None:
    from orchestrator.cli._output import print_table

    lines = [f"as of {report['as_of']}"]
    state = report["health"]
    for f in state["failed_journeys"]:
        lines.append(
            f"FAILED {f['journey']} since {f['since']} (again at the tick of {f['last_seen']}): {f['error']}"
        )
    if state["last_tick_stale"]:
        lines.append(
            f"STALE: no tick for {_seconds(state['last_tick_age_seconds'])} (more than "
            f"{_seconds(state['stale_after_seconds'])}): is the engine running?"
        )
    if not report["journeys"]:
        lines.append("no journey has entered anyone yet")
    print("\n".join(lines))
    journeys = report["journeys"]
    if journeys:
        print()
        print_table(
            [("journey", "left"), ("due now", "right"), ("due in 1h", "right"), ("finished", "left")],
            [
                (
                    journey_id,
                    j["due_now"],
                    j["due_next_hour"],
                    ", ".join(f"{k} {v}" for k, v in sorted(j["finished"].items())) or "none",
                )
                for journey_id, j in journeys.items()
            ],
        )
        active = [
            (journey_id, f"v{version}", state, n)
            for journey_id, j in journeys.items()
            for version, states in j["active"].items()
            for state, n in states.items()
        ]
        if active:
            print("\nactive instances:")
            print_table(
                [("journey", "left"), ("version", "left"), ("step", "left"), ("active", "right")],
                active,
                indent=2,
            )
    backlog = [b for b in report["outbox"] if b["queued"] or b["sending"] or b["uncertain"]]
    if backlog:
        print("\noutbox backlog (queued, not yet delivered):")
        print_table(
            [
                ("channel", "left"),
                ("queued", "right"),
                ("in flight", "right"),
                ("uncertain", "right"),
                ("oldest", "left"),
            ],
            [(b["channel"], b["queued"], b["sending"], b["uncertain"], b["oldest"]) for b in backlog],
            indent=2,
        )
        if any(b["uncertain"] for b in backlog):
            print(
                "  uncertain: in flight when a dispatcher stopped, not sent again (at_most_once); "
                "see orchestrator why"
            )
    else:
        print("\noutbox backlog: empty")
    partitions = report.get("partitions")
    if partitions:
        held = sorted((w, n) for w, n in partitions.items() if w)
        free = partitions.get("", 0)
        print(f"\npartitions: {sum(partitions.values())}, held by {len(held)} worker(s), {free} free")
        if held:
            print_table([("worker", "left"), ("partitions", "right")], held, indent=2)
    last = report["last_tick"]
    if last is None:
        print("\nno tick has run yet")
    else:
        timings = ", ".join(f"{k} {v:.3f}s" for k, v in last.get("timings", {}).items())
        print(f"\nlast tick at {last['at']}: {timings}")


def _journey_status(store: Store, args: Args) -> int:
    """``status JOURNEY``: the journey's per-step funnel, every version that ran, per arm
    (``measure.journey_funnels``)."""
    from orchestrator.measure import funnel_lines, journey_funnels

    try:
        funnels = journey_funnels(store, args.journey)
    except KeyError as exc:
        raise Failure(str(exc.args[0])) from None
    finally:
        store.dispose()
    if args.format == "json":
        print(json.dumps({"journey": args.journey, "versions": [f.to_dict() for f in funnels]}, indent=2))
        return 0
    for i, funnel in enumerate(reversed(funnels)):  # the latest version first
        if i:
            print()
        print("\n".join(funnel_lines(funnel)))
    return 0


def _seconds(value: float) -> str:
    """A number of seconds for people: 42s, 17m, 5.0h, 3.2d."""
    if value < 120:
        return f"{value:.0f}s"
    if value < 7200:
        return f"{value / 60:.0f}m"
    if value < 172800:
        return f"{value / 3600:.1f}h"
    return f"{value / 86400:.1f}d"
