"""The command line: ``orchestrator <command>``.

Each command is a thin face over the core: it parses arguments, opens the store, calls one core function
and prints the result. Exit codes: 0 success, 1 the work found problems (invalid journeys, rejected rows
with ``--strict``, a failed journey, an expected failure such as a full disk, told in one line), 2 bad
usage, 130 interrupted, 141 the reader of the output went away (a broken pipe).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from orchestrator import __version__
from orchestrator.store import SchemaError, database_url

DEFAULT_JOURNEYS = "journeys"
DEFAULT_OUTBOX = "outbox"


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        metavar="URL",
        default=None,
        help="store URL (default: $ORCHESTRATOR_DB or sqlite:///orchestrator.db)",
    )


def _add_workspace(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--journeys",
        metavar="PATH",
        nargs="+",
        default=[DEFAULT_JOURNEYS],
        help="journey files or folders (default: journeys/)",
    )
    p.add_argument(
        "--templates",
        metavar="DIR",
        type=Path,
        default=None,
        help="templates folder (default: the nearest templates/ above each journey)",
    )
    p.add_argument(
        "--outbox",
        metavar="DIR",
        type=Path,
        default=Path(DEFAULT_OUTBOX),
        help="folder the outbox adapter writes messages to (default: outbox/)",
    )


def _add_engine(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--global-holdout",
        metavar="PERCENT",
        type=float,
        default=None,
        help="percent of all customers that no journey messages, a control group across journeys "
        "(default: $ORCHESTRATOR_GLOBAL_HOLDOUT, else 0)",
    )
    p.add_argument(
        "--delivery",
        metavar="CHANNEL=MODE",
        action="append",
        default=None,
        help="a channel's delivery mode: at_least_once (default; a message in flight at a crash is sent "
        "again) or at_most_once (it is marked uncertain, never sent twice); repeatable "
        "(default: $ORCHESTRATOR_DELIVERY, e.g. email=at_most_once,sms=at_least_once)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrator",
        description="Journey orchestration: behaviour signals, YAML journeys, safe messages, lift reports.",
    )
    parser.add_argument("--version", action="version", version=f"orchestrator {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the engine does")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check journey files and their templates")
    p.add_argument("paths", nargs="+", help="journey files or folders")
    p.add_argument("--templates", metavar="DIR", type=Path, default=None)
    p.add_argument(
        "--db",
        metavar="URL",
        default=None,
        help="also list template reads of customer attributes that no customer in this store has",
    )

    p = sub.add_parser("ingest", help="load events or customers from JSONL, CSV or Parquet")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument(
        "--kind",
        choices=["events", "customers"],
        default=None,
        help="what the files hold (default: from each file as a whole: an event column, or event records)",
    )
    p.add_argument(
        "--rejects",
        type=Path,
        default=None,
        metavar="FILE",
        help="append every rejected row (source, line, reason) to FILE as JSON lines",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 when any row was rejected")
    p.add_argument(
        "--min-time",
        metavar="ISO-8601",
        default=None,
        help="reject events earlier than this instant (default 1970-01-01T00:00:00Z)",
    )
    p.add_argument(
        "--max-future",
        metavar="DURATION",
        default="1d",
        help="reject events later than this long after now (default 1d)",
    )
    p.add_argument(
        "--format",
        choices=["table", "json"],
        default="table",
        help="json: print one JSON object with the counts of each file and the totals",
    )
    _add_db(p)

    p = sub.add_parser("run", help="run one tick of the engine")
    p.add_argument("--once", action="store_true", required=True, help="run exactly one tick (required)")
    p.add_argument(
        "--now",
        metavar="ISO-8601",
        default=None,
        help="the instant to run at, e.g. 2024-03-01T09:00:00Z (default: the wall clock)",
    )
    _add_workspace(p)
    _add_engine(p)
    _add_db(p)

    p = sub.add_parser("daemon", help="run ticks on a schedule until SIGTERM")
    p.add_argument("--interval", type=float, default=60.0, metavar="SECONDS", help="seconds between ticks")
    p.add_argument("--max-ticks", type=int, default=None, help=argparse.SUPPRESS)
    # Crash tests: a simulated clock (start instant, moved by --simulated-step after each tick, resumed
    # after the last stored tick) and a log of every delivery attempt.
    p.add_argument("--simulated-clock", metavar="ISO-8601", default=None, help=argparse.SUPPRESS)
    p.add_argument("--simulated-step", metavar="DURATION", default="1h", help=argparse.SUPPRESS)
    p.add_argument("--attempt-log", metavar="FILE", type=Path, default=None, help=argparse.SUPPRESS)
    # Crash tests against a provider that does not de-duplicate: smtp://HOST:PORT (email, no TLS) or
    # http://HOST:PORT/PATH (a Twilio-style SMS API).
    p.add_argument("--provider", metavar="URL", default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--inbox",
        metavar="DIR",
        type=Path,
        default=None,
        help="ingest the files dropped here before each tick (kinds from DIR/events/, DIR/customers/ or "
        "NAME.events.EXT, NAME.customers.EXT; moved to DIR/done or DIR/failed)",
    )
    p.add_argument(
        "--watch",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="look for changed journey, template and policy files this often and reload them (validated "
        "first); 0: only on SIGHUP (default 1)",
    )
    p.add_argument(
        "--log-format", choices=["text", "json"], default="text", help="text lines or one JSON object a line"
    )
    p.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], default="info", help="default info"
    )
    _add_workspace(p)
    _add_engine(p)
    _add_db(p)

    p = sub.add_parser(
        "retire",
        help="end a journey for good: cancel its queued messages and finish its active instances",
    )
    p.add_argument("journey", metavar="JOURNEY", help="the journey id")
    _add_db(p)

    from orchestrator.cli.lift import add_lift_parser, add_report_parser

    add_report_parser(sub)
    add_lift_parser(sub)

    from orchestrator.cli.runtime import add_plan_parser, add_status_parser

    add_plan_parser(sub)
    add_status_parser(sub)

    from orchestrator.cli.why import add_preview_parser, add_why_parser

    add_why_parser(sub)
    add_preview_parser(sub)

    p = sub.add_parser("evaluate", help="count the customers each journey's signal matches at an instant")
    p.add_argument("--journeys", nargs="+", default=[DEFAULT_JOURNEYS], metavar="PATH")
    p.add_argument("--templates", metavar="DIR", type=Path, default=None)
    p.add_argument(
        "--events",
        type=Path,
        nargs="*",
        default=[],
        metavar="FILE",
        help="event files to ingest first (into --db, or a temporary store when --db is not given)",
    )
    p.add_argument("--now", metavar="ISO-8601", required=True, help="the evaluation instant")
    p.add_argument("--format", choices=["table", "json"], default="table")
    _add_db(p)

    p = sub.add_parser("demo", help="run the bundled demo on a fresh SQLite file")
    p.add_argument(
        "--dir",
        type=Path,
        default=Path("demo"),
        help="a new or empty folder (or one an earlier demo made) for the demo's store and outbox",
    )
    p.add_argument(
        "--data", type=Path, default=Path("examples/demo"), help="folder with customers.csv and events.jsonl"
    )
    p.add_argument("--journeys", nargs="+", default=[DEFAULT_JOURNEYS], metavar="PATH")
    p.add_argument("--days", type=int, default=21, help="simulated days to run after the history")
    p.add_argument("--ticks-per-day", type=int, default=6)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from orchestrator.cli import commands
    from orchestrator.cli.errors import describe, unexpected

    handler = getattr(commands, f"cmd_{args.command}")
    try:
        code = int(handler(args) or 0)
        sys.stdout.flush()  # a reader that went away (``| head``) shows here, not at exit
        return code
    except commands.UsageError as exc:
        return _fail(args.command, str(exc), 2)
    except (commands.Failure, SchemaError) as exc:
        return _fail(args.command, str(exc), 1)
    except BrokenPipeError:
        # The reader of our output stopped (``orchestrator ... | head -1``): exit quietly, as a command
        # killed by SIGPIPE would; what is still buffered goes nowhere rather than failing again at exit.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt:
        return _fail(args.command, "interrupted", 130)
    except Exception as exc:
        try:
            message = describe(exc)
        except Exception:  # describing must never hide the error itself
            message = None
        if message is None and args.verbose:
            raise  # the traceback, for a bug report
        return _fail(args.command, message or unexpected(exc), 1)


def _fail(command: str, message: str, code: int) -> int:
    """Print ``orchestrator COMMAND: message`` on stderr (if it is still there) and return ``code``."""
    with contextlib.suppress(OSError):
        print(f"orchestrator {command}: {message}", file=sys.stderr, flush=True)
    return code


def print_json(value: object) -> None:
    print(json.dumps(value, indent=2, sort_keys=False, default=str))


__all__ = ["build_parser", "database_url", "main", "print_json"]
