"""The command line: ``orchestrator <command>``.

Each command is a thin face over the core: it parses arguments (``_app``, on typer), resolves its settings
(``_settings``), opens the store, calls one core function and prints the result (``_output`` for tables and
progress bars). Exit codes: 0 success, 1 the work found problems (invalid journeys, rejected rows with
``--strict``, a failed journey, an expected failure such as a full disk, told in one line), 2 bad usage,
130 interrupted, 141 the reader of the output went away (a broken pipe).

Importing this package loads nothing heavy: ``orchestrator --help`` and ``--version`` answer at once, and
each command imports the core it needs when it runs.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Sequence

from orchestrator.cli._guard import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, fail, quiet_broken_pipe, run_guarded
from orchestrator.cli._settings import DEFAULT_JOURNEYS, DEFAULT_OUTBOX


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default: ``sys.argv[1:]``); the exit code."""
    import typer

    from orchestrator.cli._app import build_app

    args = list(sys.argv[1:] if argv is None else argv)
    if "daemon" in args and hasattr(signal, "SIGHUP") and argv is None:
        # A reload asked for while the daemon starts (systemctl reload right after start) must not end
        # it: SIGHUP is ignored until the daemon's own handler is in place (the files are read anyway).
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    command = build_app()
    try:
        return int(command.main(args=args, prog_name="orchestrator", standalone_mode=False) or 0)
    except typer.TyperException as exc:  # bad usage, found by the parser
        if not exc.format_message():  # no arguments at all: the help was printed
            return exc.exit_code
        where = getattr(getattr(exc, "ctx", None), "command_path", None) or _command_path(args)
        message = exc.format_message().replace("Value error, ", "")
        return fail(where, f"{message} (see '{where} --help')", exc.exit_code)
    except typer.Abort:
        return fail(_command_path(args), "interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:  # writing the help or the version to a reader that went away
        return quiet_broken_pipe()


def _command_path(args: Sequence[str]) -> str:
    """``orchestrator COMMAND`` for the first word of ``args`` that is not an option (or its value)."""
    from orchestrator.cli._app import app

    names = {info.name for info in app.registered_commands}
    word = next((a for a in args if a in names), None)
    return "orchestrator" if word is None else f"orchestrator {word}"


def print_json(value: object) -> None:
    print(json.dumps(value, indent=2, sort_keys=False, default=str))


__all__ = [
    "DEFAULT_JOURNEYS",
    "DEFAULT_OUTBOX",
    "EXIT_BROKEN_PIPE",
    "EXIT_INTERRUPTED",
    "main",
    "print_json",
    "run_guarded",
]
