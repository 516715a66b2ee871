"""``orchestrator demo``: the whole loop on the bundled shop, on a simulated clock.

It ingests the bundled history into a fresh SQLite file, then lives through the following days: each
day the shop's customers behave (customers who were messaged recently are more active, so the journeys
have something to prove), the engine ticks several times, and at the end the demo prints what was sent
and each journey's lift report.

The demo writes only into a folder of its own: one that does not exist yet or is empty (it then leaves a
marker file, ``MARKER``, in it), or one that holds its marker from an earlier run, whose store and outbox
it replaces. Any other folder (``--dir .`` next to a real ``orchestrator.db``) is refused untouched.
"""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TextIO

import numpy as np

from orchestrator.channels import ChannelRouter, OutboxAdapter
from orchestrator.clock import SimulatedClock, SystemClock, to_us
from orchestrator.demo._population import HISTORY_DAYS, HISTORY_END, make_population, simulate_day
from orchestrator.engine import Engine, load_workspace
from orchestrator.ingest import ingest_events_records, ingest_file
from orchestrator.language import SpecError
from orchestrator.measure import format_table, journey_report
from orchestrator.store import (
    Store,
    StoreHeld,
    customer_keys_by_id,
    customers_sent_since,
    first_sent_messages,
    hold,
    message_outcomes,
    open_store,
    sqlite_url,
)

RESPONSE_DAYS = 3  # how long a delivered message keeps a customer more active
RESPONSE_BOOST = 3.0
#: The file that marks a folder as the demo's own, so that a rerun may replace what it wrote there.
MARKER = ".orchestrator-demo"


def claim_folder(folder: Path) -> str | None:
    """Make ``folder`` the demo's: create it, or mark it when it is empty; None when the demo may write
    there, else why not (nothing is changed then)."""
    if folder.exists() and not folder.is_dir():
        return "it is not a folder"
    if (folder / MARKER).is_file():
        return None
    if folder.is_dir() and any(folder.iterdir()):
        return f"it is not empty and was not made by the demo (no {MARKER} in it)"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("Made by `orchestrator demo`, which replaces what it wrote here.\n")
    return None


def run_demo(
    folder: Path,
    data: Path,
    journeys: Sequence[str],
    *,
    days: int = 21,
    ticks_per_day: int = 6,
    seed: int = 11,
    global_holdout: float = 0.0,
    out: TextIO | None = None,
    progress: Callable[[int, int], object] | None = None,
) -> int:
    """Run the demo in ``folder`` (see the module docstring) and print what happened to ``out`` (default:
    stdout); ``progress``, when given, is told after each tick how many of the simulated days' ticks ran;
    ``global_holdout`` is the percent of customers no journey messages (``report --all`` measures the
    program against it).
    The exit code: 0, 1 (invalid journeys, a folder it may not use) or 2 (the data is missing)."""
    out = out if out is not None else sys.stdout  # read at the call: a test may have replaced it
    customers_file, events_file = data / "customers.csv", data / "events.jsonl"
    for needed in (customers_file, events_file):
        if not needed.exists():
            print(f"demo: {needed} is missing (run from the project folder, or pass --data)", file=sys.stderr)
            return 2
    try:
        workspace = load_workspace(journeys)
    except SpecError as exc:
        print(f"demo: the journeys are not valid:\n{exc}", file=sys.stderr)
        return 1

    try:
        refused = claim_folder(folder)
    except OSError as exc:
        refused = f"it cannot be made ready: {exc.strerror or exc}"
    if refused is not None:
        where = folder.resolve()
        print(
            f"demo: will not write into {where}: {refused}; choose a new or empty folder with --dir",
            file=sys.stderr,
        )
        return 1
    # A fresh store and outbox every time (in the demo's own folder), so the figures are reproducible.
    db_path, outbox = folder / "orchestrator.db", folder / "outbox"
    try:  # the one engine on this store while the demo runs (released at the end, or when the process ends)
        holding = hold(sqlite_url(db_path), "demo", SystemClock().now())
    except StoreHeld as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    for stale in (
        db_path,
        db_path.with_name(db_path.name + "-wal"),
        db_path.with_name(db_path.name + "-shm"),
    ):
        stale.unlink(missing_ok=True)
    shutil.rmtree(outbox, ignore_errors=True)
    store = open_store(sqlite_url(db_path))
    clock = SimulatedClock(HISTORY_END)
    start_us = to_us(HISTORY_END)

    print(f"Demo store: {db_path}  outbox: {outbox}/", file=out)
    for path, kind in ((customers_file, "customers"), (events_file, "events")):
        report = ingest_file(store, path, kind=kind, now_us=start_us)
        print(f"Ingested {report.accepted} {kind} from {path} ({report.rejected} rejected)", file=out)

    engine = Engine(
        store, workspace, ChannelRouter([OutboxAdapter(outbox)]), clock, global_holdout=global_holdout
    )
    with store.connect() as conn:
        key_of = customer_keys_by_id(conn)
    pop = make_population(len(key_of))
    pop_keys = np.array([key_of.get(cid, 0) for cid in pop.ids], dtype=np.int64)
    rng = np.random.default_rng(seed)

    print(f"\nSimulating {days} days from {HISTORY_END.date()}, {ticks_per_day} ticks a day", file=out)
    for day in range(days):
        day_start = HISTORY_END + timedelta(days=day)
        boost = _response_boost(store, pop_keys, to_us(day_start))
        events = simulate_day(pop, day_start, HISTORY_DAYS + day, rng, boost)
        ingest_events_records(store, events, now_us=to_us(day_start), source=f"demo day {day + 1}")
        entered = queued = 0
        for t in range(ticks_per_day):
            clock.set(day_start + timedelta(hours=24 * t / ticks_per_day))
            tick = engine.tick()
            if progress is not None:
                progress(day * ticks_per_day + t + 1, days * ticks_per_day)
            entered += sum(j.entered for j in tick.journeys.values())
            queued += sum(j.queued for j in tick.journeys.values())
        print(
            f"  {day_start.date()}: {len(events):5d} events, {entered:4d} entered, {queued:4d} messages",
            file=out,
        )

    _print_messages(store, outbox, out)
    for plan in workspace.plans:
        print("", file=out)
        print(format_table(journey_report(store, plan.id)), file=out)
    store.dispose()
    holding.release()
    print(f"\nThe demo wrote only into {folder}/ (its store, its outbox and the marker {MARKER}).", file=out)
    return 0


def _response_boost(store: Store, pop_keys: np.ndarray, day_start_us: int) -> np.ndarray:
    since = day_start_us - RESPONSE_DAYS * 86400 * 1_000_000
    with store.connect() as conn:
        messaged = customers_sent_since(conn, since)
    return np.where(np.isin(pop_keys, messaged), RESPONSE_BOOST, 1.0)


def _print_messages(store: Store, outbox: Path, out: TextIO) -> None:
    with store.connect() as conn:
        rows = message_outcomes(conn)
        sample = first_sent_messages(conn, 3)
    counts = Counter((r.journey_id, r.channel, r.status) for r in rows)
    reasons = Counter(r.reason for r in rows if r.status != "sent")
    print(f"\nMessages ({len(rows)} in the ledger; files under {outbox}/):", file=out)
    for (journey, channel, status), n in sorted(counts.items()):
        print(f"  {journey:18s} {channel:6s} {status:10s} {n:5d}", file=out)
    for reason, n in reasons.most_common():
        print(f"  not sent: {reason} ({n})", file=out)
    print("\nA few of the messages sent:", file=out)
    for message in sample:
        heading = message.subject or message.title or ""
        print(
            f"  [{message.journey_id}/{message.step}] {message.channel} to {message.recipient}: {heading}",
            file=out,
        )
        for line in (message.body or "").strip().splitlines()[:3]:
            print(f"      {line}", file=out)
