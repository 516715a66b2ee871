#!/usr/bin/env python3
"""How every cost of a tick grows with the customer base: one JSON line per size, then a table.

    python benchmarks/scale.py [--customers 250000 1000000 4000000] [--seed 42] [--dispatch 20000]
                               [--workdir DIR] [--skip stepping,wait_for,engine,dispatch]

For each size N (about 20 events per customer, the reference workload of ``../shared/bench``), each
figure comes from its own benchmark, run as a separate process so that one measurement's memory and
caches never flatter another's:

- ``benchmarks/signals.py --customers N``: ingest of the workload through the engine's ingest path
  (events/s), the signal state from the store and from a snapshot (start-up), the first evaluation of the
  five reference journeys, a second tick after 1% more events, and the reference numpy kernel's time on
  the same data (``reference_s``, the median of three, measured in that run);
- ``orchestrator run --once`` on the store just ingested, with the five reference journeys: the whole
  engine's first tick as an operator runs it (start-up, entry, stepping, its peak resident memory read
  from the kernel's accounting of that process: ``peak_rss_mb``), then a second run that starts from the
  snapshot the first one left;
- ``benchmarks/stepping.py --instances N``: one durable stepping run of N due instances through
  ``send -> wait`` on SQLite;
- ``benchmarks/waitfor.py --instances N``: a tick's event entry and ``wait_for`` matching with N instances
  parked on a cart id and 10,000 new events, against one full signal evaluation of the same customers;
- once, not per size, ``benchmarks/stepping.py --dispatch M``: dispatch to the file outbox per channel.

Ratios are to the reference kernel measured in the same size's run. A figure whose benchmark failed or is
missing prints as ``null`` in JSON and ``-`` in the table, with the cause on stderr; the others go on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
REFBENCH = ROOT.parent / "shared" / "bench" / "refbench.py"
HOUR = 3600
CHANNELS = ("sms", "push", "email")


def run_json(argv: list[str], *, env: dict[str, str] | None = None) -> tuple[dict[str, Any] | None, dict]:
    """Run a command; its last JSON line on stdout (or None when it failed), its wall time and exit code."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    info = {"wall_s": round(wall, 3), "rc": proc.returncode}
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode not in (0, 1) or not lines:
        tail = (err.strip().splitlines() or ["no output"])[-1]
        print(
            f"scale: {' '.join(Path(a).name for a in argv[:3])} failed ({proc.returncode}): {tail}",
            file=sys.stderr,
        )
        return None, info
    return json.loads(lines[-1]), info


def run_measured(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run a command to its end; its wall time, exit code and peak resident memory (this process alone)."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        tail = (err.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        print(f"scale: {' '.join(argv[1:4])} failed ({proc.returncode}): {tail}", file=sys.stderr)
    return {"wall_s": round(wall, 3), "rc": proc.returncode, "peak_rss_mb": round(usage.ru_maxrss / 1024)}


def iso(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def get(data: dict[str, Any] | None, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def one_size(n: int, args: argparse.Namespace, workdir: Path, now: int) -> dict[str, Any]:
    here = workdir / f"n{n}"
    here.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    row: dict[str, Any] = {"customers": n}

    signals, _ = run_json(
        [
            py,
            str(BENCH / "signals.py"),
            "--customers",
            str(n),
            "--seed",
            str(args.seed),
            "--workdir",
            str(here),
        ],
        env=env,
    )
    row["events"] = get(signals, "events")
    row["ingest_events_per_s"] = get(signals, "ingest_events_per_s")
    row["startup_snapshot_s"] = get(signals, "startup_snapshot_s")
    store_s = get(signals, "startup_store_s")
    if store_s is None and signals is not None:
        store_s = round(signals["state_load_seconds"] + signals["state_append_seconds"], 3)
    row["startup_store_s"] = store_s
    row["first_tick_s"] = get(signals, "evaluation_seconds")
    row["second_tick_s"] = get(signals, "second_tick", "seconds")
    row["second_tick_reevaluated_share"] = get(signals, "second_tick", "customers_reevaluated_share")
    row["signals_peak_rss_mb"] = get(signals, "engine_peak_rss_mb")
    row["snapshot_mb"] = get(signals, "snapshot_mb")
    row["reference_s"] = get(signals, "reference_seconds")
    row["match"] = get(signals, "match")

    if "engine" not in args.skip and signals is not None:
        # The whole engine as an operator runs it, on the store the signals benchmark filled.
        db = f"sqlite:///{here / 'orchestrator.db'}"
        base = [py, "-m", "orchestrator", "run", "--once", "--journeys", str(ROOT / "examples" / "reference")]
        base += ["--db", db, "--outbox", str(here / "outbox")]
        first = run_measured([*base, "--now", iso(now + 2 * HOUR)], env)
        second = run_measured([*base, "--now", iso(now + 3 * HOUR)], env)
        row["engine_first_run_s"] = first["wall_s"] if first["rc"] == 0 else None
        row["engine_second_run_s"] = second["wall_s"] if second["rc"] == 0 else None
        row["peak_rss_mb"] = max(first["peak_rss_mb"], second["peak_rss_mb"])
    else:
        row["engine_first_run_s"] = row["engine_second_run_s"] = row["peak_rss_mb"] = None

    if "stepping" not in args.skip:
        argv = [py, str(BENCH / "stepping.py"), "--instances", str(n), "--funnel-rounds", "0"]
        stepping, _ = run_json([*argv, "--workdir", str(here / "stepping")], env=env)
        row["stepping_s"] = get(stepping, "stepping_seconds")
    else:
        row["stepping_s"] = None

    waitfor_script = BENCH / "waitfor.py"
    if "wait_for" not in args.skip and waitfor_script.exists():
        waitfor, _ = run_json(
            [py, str(waitfor_script), "--instances", str(n), "--workdir", str(here / "waitfor")], env=env
        )
        row["wait_for_tick_s"] = get(waitfor, "tick_seconds")
        row["wait_for_of_evaluation"] = get(waitfor, "ratio_to_evaluation")
    else:
        row["wait_for_tick_s"] = row["wait_for_of_evaluation"] = None

    ref = row["reference_s"]
    for key in ("startup_snapshot_s", "startup_store_s", "first_tick_s", "second_tick_s", "stepping_s"):
        value = row[key]
        row[key.removesuffix("_s") + "_of_reference"] = round(value / ref, 3) if value and ref else None
    return row


COLUMNS = [
    ("customers", "customers", "{:,}"),
    ("ingest_events_per_s", "ingest ev/s", "{:,}"),
    ("startup_snapshot_s", "start: snapshot s", "{:.2f}"),
    ("startup_store_s", "start: store s", "{:.2f}"),
    ("first_tick_s", "first eval s", "{:.3f}"),
    ("second_tick_s", "second tick s", "{:.3f}"),
    ("second_tick_reevaluated_share", "re-evaluated", "{:.1%}"),
    ("stepping_s", "stepping s", "{:.2f}"),
    ("wait_for_tick_s", "wait_for tick s", "{:.3f}"),
    ("engine_first_run_s", "run 1 s", "{:.1f}"),
    ("engine_second_run_s", "run 2 s", "{:.1f}"),
    ("peak_rss_mb", "peak RSS MB", "{:,}"),
    ("reference_s", "reference s", "{:.3f}"),
]


def table(rows: list[dict[str, Any]]) -> str:
    cells = [[title for _, title, _ in COLUMNS]]
    for row in rows:
        cells.append([fmt.format(row[key]) if row.get(key) is not None else "-" for key, _, fmt in COLUMNS])
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, nargs="+", default=[250_000, 1_000_000, 4_000_000])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--dispatch", type=int, default=20_000, metavar="M", help="messages per channel (0: skip)"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where data and stores go (default: temp)")
    parser.add_argument("--skip", default="", help="comma-separated: engine, stepping, wait_for")
    args = parser.parse_args()
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if not REFBENCH.exists():
        sys.exit(f"reference workload generator not found at {REFBENCH}")
    scratch = tempfile.TemporaryDirectory() if args.workdir is None else None
    workdir = args.workdir or Path(scratch.name)  # type: ignore[union-attr]
    now = 1_700_006_400  # the reference workload's evaluation instant (refbench.NOW)

    rows = []
    for n in args.customers:
        row = one_size(n, args, workdir, now)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.dispatch:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        argv = [
            sys.executable,
            str(BENCH / "stepping.py"),
            "--instances",
            "1000",
            "--dispatch",
            str(args.dispatch),
        ]
        dispatch, _ = run_json([*argv, "--workdir", str(workdir / "dispatch")], env=env)
        rates = {
            layout: {
                ch: get(dispatch, "dispatch_by_layout", layout, ch, "messages_per_second") for ch in CHANNELS
            }
            for layout in ("files", "spool")
        }
        cpu = {
            layout: {
                ch: get(dispatch, "dispatch_by_layout", layout, ch, "messages_per_cpu_second")
                for ch in CHANNELS
            }
            for layout in ("files", "spool")
        }
        line = {
            "messages": args.dispatch,
            "dispatch_messages_per_s": rates,
            "dispatch_messages_per_cpu_s": cpu,
        }
        print(json.dumps(line), flush=True)
    print()
    print(table(rows))
    if args.dispatch:
        print("\ndispatch to the file outbox, messages a second (wall; CPU of the dispatching process):")
        for layout in ("files", "spool"):
            parts = [f"{ch} {rates[layout][ch] or 0:,} ({cpu[layout][ch] or 0:,})" for ch in CHANNELS]
            print(f"  {layout}: " + ", ".join(parts))
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        growth = last["customers"] / first["customers"]
        parts = []
        for key in ("startup_store_s", "first_tick_s", "second_tick_s", "stepping_s", "peak_rss_mb"):
            if first.get(key) and last.get(key):
                parts.append(f"{key} x{last[key] / first[key]:.1f}")
        print(
            f"\nfrom {first['customers']:,} to {last['customers']:,} customers (x{growth:.0f}): "
            + ", ".join(parts)
        )
    if scratch is not None:
        scratch.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
