#!/usr/bin/env python3
"""Stepping due instances in bulk, and dispatching what they queued, on a SQLite store.

    python benchmarks/stepping.py --instances 100000 [--signals] [--dispatch 20000] [--workdir DIR]
                                  [--funnel-rounds 3] [--outbox-layout files|spool|both] [--durable]

1. Creates N customers (with an email address and a first name) and N instances of a two-step journey
   (``send`` an email, then ``wait: 3d``), all due now, in a fresh SQLite file. Not timed.
2. Times one stepping run as a tick runs it (``Store.begin(bulk=True)``), commit included: read the due
   instances, move them through the transition table, write N state changes with their first sends (one
   UPDATE over the runs of their ids), N queued ledger rows (one INSERT ... SELECT) and the per-step
   funnel's counts (one upsert). Nothing is rendered here: rendering happens at dispatch, after the
   commit. Split into read / step / write (``write``: instances, ledger, funnel) / commit, with the
   process's CPU seconds; then the checkpoint a tick makes after its journeys (``checkpoint_seconds``,
   not part of the stepping time). The disk reference (``disk_reference``: N ledger-sized and N
   instance-sized rows written to a fresh file without indexes, one commit) is measured in the same run,
   and stepping given as a ratio to it. ``--funnel-rounds R`` (default 3, 0 for none) repeats the run on
   fresh identical stores with and without the funnel's counts: ``funnel`` gives both and the share the
   counts add. ``stepping_figures(n)`` returns the same figures as a dict (for ``benchmarks/scale.py``).
3. With ``--signals``: generates the reference workload for the same N customers (``refbench.generate``
   from ``../shared/bench``, about 20 events per customer), loads it into the engine's event log in memory
   and times the engine's evaluation of the five reference signals (the median of three, as in
   ``benchmarks/signals.py``), so stepping can be read as a ratio to it.
4. With ``--dispatch M``: for each of sms, push and email, a fresh store of M customers whose journey
   sends on that channel (email: subject, text and a 5 KB HTML template) is stepped (not timed), then
   dispatch is timed: read the due rows and their customers, apply a contact policy (daily and weekly
   caps and an exclusion, which every message passes), render in the sandbox, hand each message to the
   file outbox adapter and record the outcomes, for each outbox layout (``--outbox-layout``: ``files``,
   one file per message, ``spool``, one spool file per dispatch batch, or ``both``; ``--durable`` fsyncs
   each file or spool, else flushing is left to the OS). Reported as messages per second of wall time
   and of this process's CPU time, with the phases (in total and in microseconds per message), and
   without the adapter's own work: ``dispatch`` by channel for the spool (or the one layout asked for),
   ``dispatch_by_layout`` every layout timed. ``dispatch_figures`` returns the latter as a dict (for
   ``benchmarks/scale.py``).

Where the time goes (SQLite, WAL, synchronous=NORMAL, 16 KiB pages in a new store; 2 shared cores under
a load of 8-12, so wall times are two to three times the CPU's): nearly all of it is SQLite's B-tree
work. The walk itself (numpy over the transition table) is 1-2% of it. Reading the due instances is about
a fifth: SQLite's scan of the live index and its rows with one ``group_concat`` per column (about 0.6 CPU
seconds at 1,000,000), then numpy parses each comma-separated column (0.15 s; the instants come relative
to now, a few characters each). The UPDATE of the instances writes each row (about 1 CPU microsecond);
moving each instance's entry in ``ix_instances_live`` (the only index it changes: the entry leaves the
index's due end for its far end, a seek each) costs about 1.3 microseconds more, so a move of at least
half the table (a young store, a first large campaign, this benchmark) drops the index and builds it
again after the writes in the same transaction, about 0.4 microseconds per active row
(``store._instances._live_index_set_aside``); in an older store the entries move one by one. The ledger
INSERT is now the largest part, about half of the writes: the row with its key built and the customer's
id joined (about 0.7 microseconds) and three indexes (the unique text key about 0.45, the status and
customer indexes about 0.15 each; a unique key over integers, such as instance, step and visit, would save
about 0.3, but SQLite keeps a unique constraint inside the table: dropping it means rebuilding the
messages table in a migration). The funnel's upsert is one row per transition: under a millisecond. The
commit appends the pages to the write-ahead log (about 6%; 16 KiB pages cut it to about a third of what
4 KiB pages cost); the checkpoint that copies them into the database is left to after the journeys
(``Engine.tick``).

At 1,000,000 instances (``--instances 1000000 --funnel-rounds 0``, three runs paired with the code before
these changes, same period, load 8-12): stepping 4.4 CPU seconds and 10.9 s wall (medians; before: 8.1
CPU seconds and 19.9 s), 2.2 times the disk reference measured in the same run (before: 3.5, with 4 KiB
pages for the reference too). One run with the index never set aside (the older-store case): 4.7 CPU
seconds, 11.8 s wall.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.engine._signal_state import SignalState  # noqa: E402
from orchestrator.engine._stepping import step_due  # noqa: E402
from orchestrator.engine._workspace import load_workspace  # noqa: E402
from orchestrator.signals import (  # noqa: E402
    AggregateCache,
    Categorical,
    CustomerFrame,
    Evaluator,
    EventFrame,
    IncrementalAggregates,
)
from orchestrator.store import insert_instances, open_store, sqlite_url  # noqa: E402
from orchestrator.store._customers import upsert_customers  # noqa: E402
from orchestrator.store._db import PAGE_SIZE  # noqa: E402

JOURNEY = """\
id: bench
version: 1
signal: count(signup, within=1d) > 0
holdout: 0
steps:
  - id: hello
    send:
      channel: email
      subject: "Hello {{ customer.first_name }}"
      template: hello.txt
  - id: pause
    wait: 3d
"""
NOW_US = 1_700_006_400 * 1_000_000


def setup(workdir: Path, n: int, journey: str = JOURNEY) -> tuple[Any, Any]:
    (workdir / "journeys").mkdir(parents=True, exist_ok=True)
    (workdir / "templates").mkdir(exist_ok=True)
    (workdir / "journeys" / "bench.yaml").write_text(journey)
    (workdir / "templates" / "hello.txt").write_text("Hi {{ customer.first_name }}, welcome in.\n")
    db = workdir / "bench.db"
    for stale in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        stale.unlink(missing_ok=True)
    store = open_store(sqlite_url(db))
    workspace = load_workspace([workdir / "journeys"])
    plan = workspace.plans[0]
    for first in range(1, n + 1, 100_000):
        with store.begin() as conn:
            rows = [
                {
                    "id": f"c{k}",
                    "email": f"c{k}@example.com",
                    "phone": f"+1415555{k % 10000:04d}",
                    "push_token": f"token-{k}",
                    "first_name": f"Name{k}",
                    # A recorded yes: without one, no marketing message goes out (opt-in).
                    "consent_email": True,
                    "consent_sms": True,
                    "consent_push": True,
                }
                for k in range(first, min(first + 100_000, n + 1))
            ]
            upsert_customers(conn, rows, now_us=0)
    with store.begin() as conn:
        keys = np.arange(1, n + 1, dtype=np.int64)  # customer keys are dense from 1 in a fresh store
        insert_instances(conn, plan.id, plan.version, keys, np.zeros(n, bool), "hello", NOW_US)
    return store, workspace


def step_once(store: Any, workspace: Any, n: int, count_funnel: bool = True) -> dict[str, Any]:
    """One stepping run of the n due instances, as a tick runs it (one bulk transaction, commit included),
    then the checkpoint a tick makes after its journeys, timed apart; checked (n parked, n queued)."""
    plan = workspace.plans[0]
    customers = CustomerFrame(n + 1, np.arange(n + 1) > 0)
    evaluator = Evaluator(EventFrame.empty(n + 1), customers, NOW_US, plan.metrics, AggregateCache())
    started, cpu = time.perf_counter(), time.process_time()
    with store.begin(bulk=True) as conn:
        stepped = step_due(conn, plan, evaluator, customers, SignalState(), NOW_US, count_funnel=count_funnel)
        committing = time.perf_counter()
    done, cpu = time.perf_counter(), time.process_time() - cpu
    store.checkpoint()
    checkpoint = time.perf_counter() - done
    with store.connect() as conn:
        parked = conn.exec_driver_sql(
            "SELECT COUNT(*) FROM journey_instances WHERE state = 'pause' AND wake_at_us = ?",
            (NOW_US + 3 * 86400 * 1_000_000,),
        ).scalar()
        queued = conn.exec_driver_sql("SELECT COUNT(*) FROM messages WHERE status = 'queued'").scalar()
        counted = conn.exec_driver_sql(
            "SELECT COALESCE(SUM(n), 0) FROM journey_funnel WHERE trigger_name = 'next'"
        ).scalar()
        first_sends = conn.exec_driver_sql(
            "SELECT COUNT(*) FROM journey_instances WHERE first_send_us = ?", (NOW_US,)
        ).scalar()
    assert stepped.stepped == n and parked == n and queued == n, (stepped.stepped, parked, queued)
    assert first_sends == n, first_sends
    assert counted == (n if count_funnel else 0), counted  # hello -> pause (then the wait parks)
    return {
        "funnel_seconds": round(stepped.funnel_seconds, 4),
        "stepping_seconds": round(done - started, 3),
        "stepping_cpu_seconds": round(cpu, 3),
        "phases": {k: round(v, 3) for k, v in stepped.seconds.items()}
        | {"commit": round(done - committing, 3)},
        "write": {k: round(v, 3) for k, v in stepped.writes.items()},
        "checkpoint_seconds": round(checkpoint, 3),
    }


def disk_reference(workdir: Path, n: int) -> float:
    """The floor under stepping n instances on this machine now: a fresh SQLite file in the store's
    settings (its page size, WAL, synchronous=NORMAL) gets n rows as wide as a queued ledger row and n as
    wide as an instance, in one transaction, without an index, commit included. (Stepping also reads and
    updates rows and keeps indexes; this is the write of its bytes alone.)"""
    path = workdir / "reference.db"
    for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        stale.unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    settings = (f"page_size={PAGE_SIZE}", "journal_mode=WAL", "synchronous=NORMAL", "wal_autocheckpoint=0")
    for pragma in (*settings, "cache_size=-1048576"):
        conn.execute(f"PRAGMA {pragma}")
    conn.execute("CREATE TABLE ledger (id INTEGER PRIMARY KEY, k TEXT, j TEXT, v INT, i INT, c INT, s TEXT, "
                 "ch TEXT, st TEXT, t INT, a INT, x INT)")  # fmt: skip
    conn.execute("CREATE TABLE instances (id INTEGER PRIMARY KEY, j TEXT, v INT, c INT, s TEXT, st TEXT, "
                 "h INT, e INT, t INT, w INT, f INT)")  # fmt: skip
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    rows = "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r WHERE x < ?) "
    conn.execute(
        rows + "INSERT INTO ledger SELECT x, 'bench/v1/c' || x || '/' || x || '/hello', 'bench', 1, x, x, "
        "'hello', 'email', 'queued', 1700006400000000, 0, 0 FROM r",
        (n,),
    )
    conn.execute(
        rows + "INSERT INTO instances SELECT x, 'bench', 1, x, 'pause', 'active', 0, 1700006400000000, "
        "1700006400000000, 1700265600000000, 1700006400000000 FROM r",
        (n,),
    )
    conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.close()
    return seconds


def stepping_figures(n: int, workdir: Path | None = None) -> dict[str, Any]:
    """Stepping of n due instances (``send`` then ``wait``) on a fresh SQLite store, for
    ``benchmarks/scale.py``: the stepping run (commit included) split into read / step / write
    (instances, ledger, funnel) / commit, the checkpoint after it, and the disk reference
    (``disk_reference``) measured in the same run, with stepping's ratio to it. Keys: ``instances``,
    ``stepping_s``, ``stepping_cpu_s``, ``phases``, ``write``, ``checkpoint_s``, ``reference_s``,
    ``ratio_to_reference``, ``setup_s``."""
    scratch = tempfile.TemporaryDirectory() if workdir is None else None
    folder = Path(scratch.name) if scratch is not None else workdir
    assert folder is not None
    try:
        t0 = time.perf_counter()
        store, workspace = setup(folder, n)
        setup_s = time.perf_counter() - t0
        run = step_once(store, workspace, n)
        store.dispose()
        reference = disk_reference(folder, n)
    finally:
        if scratch is not None:
            scratch.cleanup()
    return {
        "instances": n,
        "stepping_s": run["stepping_seconds"],
        "stepping_cpu_s": run["stepping_cpu_seconds"],
        "phases": run["phases"],
        "write": run["write"],
        "checkpoint_s": run["checkpoint_seconds"],
        "reference_s": round(reference, 3),
        "ratio_to_reference": round(run["stepping_seconds"] / reference, 2),
        "setup_s": round(setup_s, 1),
    }


def funnel_cost(workdir: Path, n: int, first: dict[str, Any], rounds: int = 3) -> dict[str, Any]:
    """Stepping with and without the funnel's counts, alternately on fresh identical stores (``rounds``
    each, the first with counts being the main run), compared by their fastest runs; and the counting's
    own time within the runs with counts (one upsert of the transitions the batch took)."""
    with_counts, without, counting = [first["stepping_seconds"]], [], [first["funnel_seconds"]]
    for i in range(rounds):
        for count in (False, True) if i < rounds - 1 else (False,):
            store, workspace = setup(workdir / f"funnel-{i}-{int(count)}", n)
            run = step_once(store, workspace, n, count_funnel=count)
            store.dispose()
            (with_counts if count else without).append(run["stepping_seconds"])
            if count:
                counting.append(run["funnel_seconds"])
    best_with, best_without = min(with_counts), min(without)
    return {
        "stepping_seconds_with_counts": best_with,
        "stepping_seconds_without_counts": best_without,
        "share_of_stepping": round((best_with - best_without) / best_without, 3),
        "counting_seconds": max(counting),
        "counting_share": round(max(counting) / best_with, 4),
        "runs": {"with_counts": with_counts, "without_counts": without},
    }


SEND_STEPS = {
    "sms": "channel: sms\n      template: sms.txt",
    "push": 'channel: push\n      template: push.txt\n      title: "For you, {{ customer.first_name }}"\n'
    '      link: "app://offers/{{ customer.id }}"',
    "email": 'channel: email\n      subject: "Hello {{ customer.first_name }}"\n      template: email.txt\n'
    "      html: email.html",
}


def email_html() -> str:
    """A 5 KB HTML email template (a styled table of paragraphs around the customer's name)."""
    rows = "".join(
        f'<tr><td style="padding:8px;color:#333;font-family:Arial">Paragraph {i}: we picked a few things '
        f"for you, {{{{ customer.first_name }}}}, based on what you looked at this week.</td></tr>\n"
        for i in range(30)
    )
    page = (
        "<!DOCTYPE html><html><head><style>td { font-size: 14px; }</style></head><body>"
        f'<table width="600" style="margin:auto">{rows}</table></body></html>\n'
    )
    return page[:5200] if len(page) > 5200 else page


def dispatch_throughput(
    workdir: Path, channel: str, m: int, layout: str = "files", durable: bool = False
) -> dict[str, Any]:
    """Messages per second from queued ledger rows to the file outbox, for one channel, with the outbox's
    ``layout`` (``files``: one file per message; ``spool``: one spool file per dispatch batch) and
    ``durable`` (fsync per file, or per spool)."""
    from orchestrator.channels._base import ChannelRouter
    from orchestrator.channels._outbox import OutboxAdapter
    from orchestrator.clock import SimulatedClock, from_us
    from orchestrator.engine._dispatch import DispatchContext, dispatch_queued
    from orchestrator.language._policy_file import load_policy_text

    folder = workdir / f"dispatch-{channel}-{layout}-{'durable' if durable else 'os'}"
    folder.mkdir(parents=True, exist_ok=True)
    journey = JOURNEY.replace(
        'channel: email\n      subject: "Hello {{ customer.first_name }}"\n      template: hello.txt',
        SEND_STEPS[channel],
    )
    templates = folder / "templates"
    templates.mkdir(exist_ok=True)
    (templates / "sms.txt").write_text(
        "Hi {{ customer.first_name }}, your cart misses you. Reply STOP to opt out."
    )
    (templates / "push.txt").write_text("{{ customer.first_name }}, new picks are waiting.")
    (templates / "email.txt").write_text("Hi {{ customer.first_name }},\n\nWe picked a few things for you.\n")
    (templates / "email.html").write_text(email_html())
    store, workspace = setup(folder, m, journey)
    step_once(store, workspace, m)
    plan = workspace.plans[0]
    # Caps and an exclusion that let every message through, so the policy's whole cost is measured.
    policy = load_policy_text(
        "caps:\n  all: {per_day: 5, per_week: 10}\n"
        "exclusions:\n  - {name: vulnerable, when: vulnerable == true}\n",
        "bench-policy.yaml",
    )
    context = DispatchContext(
        plan_for=lambda _j, _v: plan,
        renderer_for=workspace.renderers.get,
        metrics_for=lambda _p: {},
        policy=policy,
    )
    router = ChannelRouter([OutboxAdapter(folder / "outbox", durable=durable, layout=layout)])  # type: ignore[arg-type]
    started, cpu_started = time.perf_counter(), time.process_time()
    report = dispatch_queued(store, router, SimulatedClock(from_us(NOW_US)), context)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    store.dispose()
    assert report.delivered == m, vars(report)
    return {
        "channel": channel,
        "layout": layout,
        "durable": durable,
        "messages": m,
        "seconds": round(seconds, 3),
        "messages_per_second": round(m / seconds),
        # This process's CPU time (all its threads): on a machine shared with other work, wall time
        # counts the waits for a core too.
        "cpu_seconds": round(cpu_seconds, 3),
        "messages_per_cpu_second": round(m / cpu_seconds),
        # Everything but the adapter's own work (the outbox writes one file per message).
        "messages_per_second_before_adapter": round(m / (seconds - report.seconds["send"])),
        "phases": {k: round(v, 3) for k, v in report.seconds.items()},
        "us_per_message": {k: round(v / m * 1e6, 1) for k, v in report.seconds.items()},
        "template_bytes": len(email_html()) if channel == "email" else None,
    }


def dispatch_figures(
    workdir: Path, m: int, layouts: tuple[str, ...] = ("files", "spool"), durable: bool = False
) -> dict[str, Any]:
    """Dispatch rates of M messages per channel (sms, push, email) for each outbox layout, by layout then
    channel (what ``benchmarks/scale.py`` reports as the dispatch rate)."""
    return {
        layout: {
            channel: dispatch_throughput(workdir, channel, m, layout, durable)
            for channel in ("sms", "push", "email")
        }
        for layout in layouts
    }


def signal_seconds(n: int, refbench_path: Path) -> float:
    """The engine's evaluation of the five reference signals over the reference workload of n customers."""
    spec = importlib.util.spec_from_file_location("refbench", refbench_path)
    assert spec is not None and spec.loader is not None
    refbench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(refbench)
    data = refbench.generate(n)
    plans = load_workspace([ROOT / "examples" / "reference"]).plans
    state = SignalState(plans)
    score = data["score"].astype(np.float64)
    score[score < 0] = np.nan
    category = data["category"].astype(np.int32)
    frame = EventFrame(
        customer=data["customer_id"].astype(np.int64),
        ts=data["ts"].astype(np.int64) * 1_000_000,
        type=data["etype"].astype(np.int32),
        type_names=list(refbench.TYPES),
        n_customers=n,
        properties={
            "category": Categorical(category, np.arange(refbench.N_CAT).astype(object)),
            "amount": data["amount"],
            "score": score,
        },
    )
    state.log.append_frame(frame, len(frame))
    now_us = int(refbench.NOW) * 1_000_000
    runs = []
    for _ in range(3):
        state.aggregates = IncrementalAggregates(state.aggregates.calls, state.log)
        started = time.perf_counter()
        state.aggregates.advance(now_us)
        cache = AggregateCache()
        state.fill(cache)
        customers = CustomerFrame(n, np.ones(n, bool))
        for plan in plans:
            assert plan.signal is not None
            Evaluator(EventFrame.empty(n), customers, now_us, plan.metrics, cache).condition(plan.signal)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--signals", action="store_true", help="also time the reference signal evaluation")
    parser.add_argument("--workdir", type=Path, default=None, help="where the store goes (default: temp)")
    parser.add_argument(
        "--dispatch", type=int, default=0, metavar="M", help="also time dispatch of M messages per channel"
    )
    parser.add_argument(
        "--outbox-layout", choices=["files", "spool", "both"], default="both", help="outbox layouts to time"
    )
    parser.add_argument("--durable", action="store_true", help="fsync the outbox (per file, or per spool)")
    parser.add_argument("--refbench", type=Path, default=ROOT.parent / "shared" / "bench" / "refbench.py")
    parser.add_argument(
        "--funnel-rounds",
        type=int,
        default=3,
        metavar="R",
        help="stepping runs with and without the funnel's counts, each on a fresh store (0: none)",
    )
    args = parser.parse_args()
    scratch = tempfile.TemporaryDirectory() if args.workdir is None else None
    workdir = args.workdir or Path(scratch.name)  # type: ignore[union-attr]
    n = args.instances
    t0 = time.perf_counter()
    store, workspace = setup(workdir, n)
    result: dict[str, Any] = {"instances": n, "setup_seconds": round(time.perf_counter() - t0, 1)}
    result |= step_once(store, workspace, n)
    store.dispose()
    reference = disk_reference(workdir, n)
    result["disk_reference_seconds"] = round(reference, 3)
    result["ratio_to_disk_reference"] = round(result["stepping_seconds"] / reference, 2)
    if args.funnel_rounds:
        result["funnel"] = funnel_cost(workdir, n, result, args.funnel_rounds)
    if args.signals:
        seconds = signal_seconds(n, args.refbench)
        result["signal_evaluation_seconds"] = round(seconds, 3)
        result["ratio_to_signals"] = round(result["stepping_seconds"] / seconds, 2)
    if args.dispatch:
        layouts = ("files", "spool") if args.outbox_layout == "both" else (args.outbox_layout,)
        by_layout = dispatch_figures(workdir, args.dispatch, layouts, durable=args.durable)
        # ``dispatch``: by channel, the last layout timed (the spool unless one layout is asked for).
        result["dispatch"] = by_layout[layouts[-1]]
        result["dispatch_by_layout"] = by_layout
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
