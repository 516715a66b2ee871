"""The bounds of one render: the configured limits, and the counters that enforce them while it runs.

Contract: ``Limits`` is the immutable configuration of a renderer. A ``Budget`` is created per render and
published in ``CURRENT_BUDGET`` (a context variable, so renders in threads stay apart); ``step`` counts one
loop iteration or call, ``emit`` counts printed characters, ``check_time`` checks the deadline, and each
raises ``LimitError`` when its bound is passed. Outside a render ``CURRENT_BUDGET`` is ``None`` and the
guards skip the per-render counts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from orchestrator.channels.templates._errors import LimitError

# Deeper values are refused: message data is never that deep, and depth multiplies the cost of printing.
MAX_DEPTH = 32
# Integers beyond this many bits are refused: they cannot be printed (Python refuses str() of more than
# 4300 digits) and multiplying them is the only way left to spend time in one operation.
MAX_INT_BITS = 16_384


@dataclass(frozen=True)
class Limits:
    """A renderer's bounds per render (see ``TemplateRenderer`` for what each one counts)."""

    max_output_chars: int
    max_value_chars: int
    max_range: int
    max_iterations: int
    timeout_s: float
    max_call_depth: int


class Budget:
    """The counters of one render. Lives in a context variable so renders in threads stay apart."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.timeout_s
        self.iterations = 0
        self.printed = 0
        self.depth = 0
        self.countdown = 1

    def check_time(self) -> None:
        # Reading the clock costs more than most guarded operations; every 16th check is plenty, since no
        # single operation between two checks can run long (each is bounded by the size checks).
        self.countdown -= 1
        if self.countdown > 0:
            return
        self.countdown = 16
        if time.monotonic() > self.deadline:
            raise LimitError(f"rendering took longer than {self.limits.timeout_s:g} s")

    def step(self) -> None:
        self.iterations += 1
        if self.iterations > self.limits.max_iterations:
            raise LimitError(f"more than {self.limits.max_iterations} loop iterations and calls")
        self.check_time()

    def emit(self, size: int) -> None:
        self.printed += size
        if self.printed > self.limits.max_value_chars:
            raise LimitError(
                f"template printed more than {self.limits.max_value_chars} characters "
                "(counting set blocks and macros)"
            )
        self.check_time()


CURRENT_BUDGET: ContextVar[Budget | None] = ContextVar("orchestrator_template_budget", default=None)


def counted(iterator: Iterator[Any], budget: Budget) -> Iterator[Any]:
    """``iterator`` with each item counted as one step of ``budget``."""
    for item in iterator:
        budget.step()
        yield item
