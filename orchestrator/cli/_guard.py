"""How a command ends: ``run_guarded`` runs a command's body and turns what it raises into an exit code and
one line on stderr (``cli._errors`` describes the error; ``orchestrator.errors`` gives each error its exit
code). Besides those: 130 interrupted, 141 the reader of the output went away (a broken pipe).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable

EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


def run_guarded(command: str, verbose: bool, body: Callable[[], int]) -> int:
    """Run a command's ``body`` and turn what it raises into an exit code and one line on stderr:
    ``orchestrator COMMAND: message`` (``cli._errors``), never a traceback (but with ``-v`` for an error
    nobody expected).

    Told as they are, with the exit code ``orchestrator.errors`` gives them: bad usage, the command's
    own failures and the store's errors (which any command may meet). The core's other errors are put in
    context by the command that calls it; one that escapes a command is a bug, told as unexpected."""
    from orchestrator.cli._errors import describe, unexpected
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
        return fail(name, str(exc), exc.exit_code)
    except BrokenPipeError:
        return quiet_broken_pipe()
    except KeyboardInterrupt:
        return fail(name, "interrupted", EXIT_INTERRUPTED)
    except Exception as exc:
        try:
            message = describe(exc)
        except Exception:  # describing must never hide the error itself
            message = None
        if message is None and verbose:
            raise  # the traceback, for a bug report
        return fail(name, message or unexpected(exc), 1)


def quiet_broken_pipe() -> int:
    """The reader of our output stopped (``orchestrator ... | head -1``): exit quietly, as a command killed
    by SIGPIPE would; what is still buffered goes nowhere rather than failing again at exit."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return EXIT_BROKEN_PIPE


def fail(where: str, message: str, code: int) -> int:
    """Print ``WHERE: message`` on stderr (if it is still there) and return ``code``."""
    with contextlib.suppress(OSError):
        print(f"{where}: {message}", file=sys.stderr, flush=True)
    return code
