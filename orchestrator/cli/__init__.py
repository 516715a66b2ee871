"""The command line: ``orchestrator <command>``.

Each command is a thin face over the core: it parses arguments (``app``, on typer), resolves its settings
(``settings``), opens the store, calls one core function and prints the result (``output`` for tables and
progress bars). Exit codes: 0 success, 1 the work found problems (invalid journeys, rejected rows with
``--strict``, a failed journey, an expected failure such as a full disk, told in one line), 2 bad usage,
130 interrupted, 141 the reader of the output went away (a broken pipe).

Importing this package loads nothing heavy: ``orchestrator --help`` and ``--version`` answer at once, and
each command imports the core it needs when it runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence

from orchestrator.cli.settings import DEFAULT_JOURNEYS, DEFAULT_OUTBOX

EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default: ``sys.argv[1:]``); the exit code."""
    import typer

    from orchestrator.cli.app import build_app

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
        return _fail(where, f"{message} (see '{where} --help')", exc.exit_code)
    except typer.Abort:
        return _fail(_command_path(args), "interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:  # writing the help or the version to a reader that went away
        return _quiet_broken_pipe()


def run_guarded(command: str, verbose: bool, body: Callable[[], int]) -> int:
    """Run a command's ``body`` and turn what it raises into an exit code and one line on stderr:
    ``orchestrator COMMAND: message`` (``cli.errors``), never a traceback (but with ``-v`` for an error
    nobody expected).

    Told as they are, with the exit code ``orchestrator.errors`` gives them: bad usage, the command's
    own failures and the store's errors (which any command may meet). The core's other errors are put in
    context by the command that calls it; one that escapes a command is a bug, told as unexpected."""
    from orchestrator.cli.errors import describe, unexpected
    from orchestrator.errors import Failure, StoreError, UsageError

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    name = f"orchestrator {command}"
    try:
        code = body()
        sys.stdout.flush()  # a reader that went away (``| head``) shows here, not at exit
        return code
    except (UsageError, Failure, StoreError) as exc:
        return _fail(name, str(exc), exc.exit_code)
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except KeyboardInterrupt:
        return _fail(name, "interrupted", EXIT_INTERRUPTED)
    except Exception as exc:
        try:
            message = describe(exc)
        except Exception:  # describing must never hide the error itself
            message = None
        if message is None and verbose:
            raise  # the traceback, for a bug report
        return _fail(name, message or unexpected(exc), 1)


def _quiet_broken_pipe() -> int:
    """The reader of our output stopped (``orchestrator ... | head -1``): exit quietly, as a command killed
    by SIGPIPE would; what is still buffered goes nowhere rather than failing again at exit."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return EXIT_BROKEN_PIPE


def _command_path(args: Sequence[str]) -> str:
    """``orchestrator COMMAND`` for the first word of ``args`` that is not an option (or its value)."""
    from orchestrator.cli.app import app

    names = {info.name for info in app.registered_commands}
    word = next((a for a in args if a in names), None)
    return "orchestrator" if word is None else f"orchestrator {word}"


def _fail(where: str, message: str, code: int) -> int:
    """Print ``WHERE: message`` on stderr (if it is still there) and return ``code``."""
    with contextlib.suppress(OSError):
        print(f"{where}: {message}", file=sys.stderr, flush=True)
    return code


def print_json(value: object) -> None:
    print(json.dumps(value, indent=2, sort_keys=False, default=str))


__all__ = ["DEFAULT_JOURNEYS", "DEFAULT_OUTBOX", "main", "print_json", "run_guarded"]
