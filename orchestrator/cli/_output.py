"""What the commands show people: tables through rich, and progress bars on a terminal.

Tables go to stdout. On a terminal they have a header rule and bold headers and fit the window; piped or
redirected they are plain aligned text without colour codes, never wrapped, without trailing spaces, so
``grep``, ``awk`` and tests read them. JSON output never goes through here.

Progress bars go to stderr, and only when stderr is a terminal: never into pipes, log files or JSON. A bar
appears once its step has run for ``DELAY`` seconds (a quick step shows nothing; a timer draws it, so it
shows even while the core has not called back yet) and is cleared when the step ends. The core knows
nothing of rich: it is handed the ``update`` method of a ``Progress`` as a plain callback, which it calls
per chunk or batch, never per row.

rich is imported only when a table or a bar is drawn, so the command line starts quickly.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import IO, Any, Literal

#: A progress bar appears once its step has run this long (seconds).
DELAY = 2.0

Justify = Literal["left", "right"]


def _console(stream: IO[str]) -> Any:
    from rich.console import Console

    tty = stream.isatty()
    # Piped: no colour, no wrapping (a row is one line however long), no terminal tricks.
    return Console(
        file=stream,
        markup=False,
        highlight=False,
        emoji=False,
        width=None if tty else 100_000,
        force_terminal=None if tty else False,
        no_color=not tty,
    )


def print_table(
    columns: Sequence[tuple[str, Justify]],
    rows: Iterable[Sequence[object]],
    *,
    indent: int = 0,
    stream: IO[str] | None = None,
) -> None:
    """Print ``rows`` under ``columns`` (header, justification) to stdout (or ``stream``), indented by
    ``indent`` spaces. Cells are shown as text exactly (no markup, no highlighting); an empty or None cell
    as "-", so that every row has a word in every column."""
    from rich import box
    from rich.padding import Padding
    from rich.table import Table

    stream = stream if stream is not None else sys.stdout  # read at the call: a test may have replaced it
    tty = stream.isatty()
    table = Table(
        box=box.SIMPLE_HEAD if tty else None,
        show_edge=False,
        pad_edge=False,
        header_style="bold" if tty else "",
        padding=(0, 2, 0, 0),
        collapse_padding=True,
    )
    for header, justify in columns:
        table.add_column(header, justify=justify, no_wrap=not tty)
    for row in rows:
        table.add_row(*("-" if cell is None or cell == "" else str(cell) for cell in row))
    console = _console(stream)
    renderable = Padding(table, (0, 0, 0, indent)) if indent else table
    if tty:
        console.print(renderable)
        return
    with console.capture() as captured:
        console.print(renderable)
    stream.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


class Progress:
    """One progress bar on stderr for a step: ``update(done, total, description)`` after each chunk or
    batch; a context manager.

    ``unit`` is "bytes" (shown as sizes and a transfer speed), a word for counted things ("ticks", shown
    as done/total) or None (a share only). A no-op unless stderr is a terminal. The bar is drawn ``delay``
    seconds after the step began (by a timer, so a step whose first callback is late still shows one),
    with what the last ``update`` said, and cleared when the step ends."""

    def __init__(self, description: str, unit: str | None = "bytes", *, delay: float = DELAY) -> None:
        self.description = description
        self.unit = unit
        self.delay = delay
        self.enabled = sys.stderr.isatty()
        self.done = 0
        self.total: int | None = None
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._bar: Any = None
        self._task: Any = None
        self._closed = False

    def __enter__(self) -> Progress:
        if self.enabled:
            self._timer = threading.Timer(self.delay, self._start)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def update(self, done: int, total: int | None = None, description: str | None = None) -> None:
        """``done`` of ``total`` (None: not known), with a new description when given."""
        if not self.enabled:
            return
        with self._lock:
            self.done, self.total = done, total
            if description is not None:
                self.description = description
            if self._bar is not None:
                self._bar.update(self._task, completed=done, total=total, description=self.description)

    def _start(self) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as Bar

        counted: list[Any] = []
        if self.unit == "bytes":
            counted = [DownloadColumn(), TransferSpeedColumn()]
        elif self.unit is not None:
            counted = [MofNCompleteColumn(), TextColumn(self.unit)]
        with self._lock:
            if self._closed:
                return
            self._bar = Bar(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                *counted,
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=_console(sys.stderr),
                transient=True,
                # Lines printed meanwhile go above the bar: stdout only when it shares the terminal.
                redirect_stdout=sys.stdout.isatty(),
                redirect_stderr=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total, completed=self.done)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
            if self._bar is not None:
                self._bar.stop()
                self._bar = None


class LiveStdout:
    """A stand-in for ``sys.stdout`` that writes to whatever ``sys.stdout`` is at each write: handed to
    core code that keeps a stream, so its lines still go above a progress bar that starts later."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()
