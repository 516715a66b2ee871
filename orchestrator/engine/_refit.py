"""The daemon's refit of the purchase models, on a schedule, in a child process.

Before each tick the daemon asks the ``Refitter`` which purchase models its journeys read
(``p_alive(purchase)``, ``predicted_clv(purchase.amount, 365d)``: see ``predictions_read``) and how old
their newest kept fit is. When one has no fit, or its newest is older than the refit interval
(``predict: {refit_every: 1d}`` in ``orchestrator.yaml``), it starts a child process that fits them on
the store's purchases up to the end of yesterday (UTC, by the engine's clock) and keeps each fit
(``predict.fit_history`` and ``predict.save_fit``, what ``orchestrator predict fit --save`` does). The
tick does not wait: ticks go on meanwhile, reading the fits kept before, and the first tick after the
child keeps a fit reads it.

The child is a fresh interpreter (spawned, not forked), at a lower CPU priority, with its output
discarded: the fit's CPU time and memory (PyMC) never hold a tick nor stay in the daemon. It opens the
store itself and writes each fit in one transaction at its end, so a fit stopped half-way keeps nothing.
It reports through a pipe: the fits kept, or the reason a fit could not be made (no purchases yet, the
``predict`` extra not installed), which the daemon logs in one line and tries again after an hour (or
the refit interval, when shorter). A child that dies without a word is logged with its exit code. The
daemon stops a child still fitting when it stops.

On PostgreSQL, where several workers share a store, the child fits only while it holds the
``predict_fit`` session lock: a second worker's child finds it taken and leaves the fit to the first,
whose kept fit the others then read. A SQLite store in memory cannot be shared with a child; the refit
is then off, said once.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from multiprocessing.connection import Connection as Pipe
from typing import Any

from orchestrator.clock import from_us
from orchestrator.durations import US_PER_SECOND, format_duration
from orchestrator.engine._signal_state import predictions_read
from orchestrator.language import JourneyPlan
from orchestrator.store import Store, StoredFit, in_memory, latest_prediction_fits

log = logging.getLogger("orchestrator.refit")

#: The refit interval without a ``predict`` section in the config.
DEFAULT_REFIT_EVERY = timedelta(days=1)
#: After a failed fit, the next try waits this long (or the refit interval, when shorter).
RETRY_AFTER = timedelta(hours=1)
#: The value property fitted for an event read only without one (``p_alive(purchase)``) and never fitted.
DEFAULT_VALUE = "amount"
#: How long the daemon waits for a child it stops before killing it.
STOP_SECONDS = 5.0

Model = tuple[str, str]  # (purchase event, value property), the key of a kept fit


def models_to_fit(plans: Sequence[JourneyPlan], stored: Mapping[Model, StoredFit]) -> list[Model]:
    """The (event, value property) fits the journeys read, once each: ``predicted_clv(purchase.amount, ..)``
    reads (purchase, amount); an event read without a value (``p_alive(purchase)``) takes the value of
    another reading of it, else that of its newest kept fit, else ``amount``."""
    read = [(event, prop) for plan in plans for _func, event, prop in predictions_read(plan)]
    valued = {event: prop for event, prop in read if prop is not None}
    newest: dict[str, StoredFit] = {}
    for fit in sorted(stored.values(), key=lambda f: f.id):
        newest[fit.event] = fit
    models: list[Model] = []
    for event, prop in read:
        if prop is None:
            prop = valued.get(event) or (newest[event].value if event in newest else DEFAULT_VALUE)
        models.append((event, prop))
    return list(dict.fromkeys(models))


def stale_models(
    models: Sequence[Model], stored: Mapping[Model, StoredFit], now_us: int, every: timedelta
) -> list[Model]:
    """Those of ``models`` without a kept fit, or whose newest fit was made ``every`` or longer ago."""
    limit = now_us - int(every.total_seconds() * US_PER_SECOND)
    return [m for m in models if m not in stored or stored[m].fitted_us <= limit]


@dataclass(frozen=True)
class RefitOutcome:
    """What the child did for one model: ``kept`` (the fit's id, its customers and seconds), ``failed``
    (the reason) or ``skipped`` (another worker holds the fit lock)."""

    event: str
    value: str
    status: str
    detail: str = ""
    fit_id: int | None = None
    customers: int = 0
    seconds: float = 0.0


class Refitter:
    """Starts a fit in a child process when the journeys' models are stale, and reads what it reports;
    ``check`` is called before each tick and never waits for the fit."""

    def __init__(self, store: Store, url: str, every: timedelta = DEFAULT_REFIT_EVERY) -> None:
        self.store = store
        self.url = url
        self.every = every
        self.retry_after = min(RETRY_AFTER, every)
        self._child: Any = None  # multiprocessing's SpawnProcess
        self._pipe: Pipe | None = None
        self._started = 0.0
        self._models: list[Model] = []
        self._not_before_us = 0
        self._said_in_memory = False
        #: Every outcome read from children, oldest first (for tests and the log).
        self.outcomes: list[RefitOutcome] = []

    @property
    def running(self) -> bool:
        return self._child is not None

    def check(self, plans: Sequence[JourneyPlan], now_us: int) -> None:
        """Read a finished child's report; start a child when no child runs and a model is stale."""
        if self._child is not None:
            self._collect(now_us)
            return
        if now_us < self._not_before_us or not any(predictions_read(plan) for plan in plans):
            return
        if in_memory(self.url):
            if not self._said_in_memory:
                log.warning("the purchase models are not refitted: the store is in memory, not in a file")
                self._said_in_memory = True
            return
        with self.store.connect() as conn:
            stored = latest_prediction_fits(conn)
        stale = stale_models(models_to_fit(plans, stored), stored, now_us, self.every)
        if stale:
            self._start(stale, now_us)

    def _start(self, models: list[Model], now_us: int) -> None:
        calibration_end = from_us(now_us).date() - timedelta(days=1)
        reader, writer = multiprocessing.Pipe(duplex=False)
        context = multiprocessing.get_context("spawn")
        child = context.Process(
            target=fit_in_child,
            args=(self.url, models, calibration_end, now_us, writer),
            name="orchestrator-refit",
            daemon=True,
        )
        child.start()
        writer.close()  # the child holds its end: a child that dies closes the pipe
        self._child, self._pipe, self._models, self._started = child, reader, models, time.perf_counter()
        log.info(
            "refit started: %s, purchases to %s included",
            ", ".join(f"{e}.{v}" for e, v in models),
            calibration_end.isoformat(),
            extra={"fields": {"models": [f"{e}.{v}" for e, v in models], "pid": child.pid,
                              "calibration_end": calibration_end.isoformat()}},
        )  # fmt: skip

    def _collect(self, now_us: int) -> None:
        child, pipe = self._child, self._pipe
        assert pipe is not None
        outcomes: list[RefitOutcome] | None = None
        if pipe.poll():
            try:
                outcomes = [RefitOutcome(**fields) for fields in pipe.recv()]
            except (EOFError, OSError):
                outcomes = None
        elif child.is_alive():
            return  # still fitting
        child.join(STOP_SECONDS)
        seconds = time.perf_counter() - self._started
        pipe.close()
        self._child = self._pipe = None
        if outcomes is None:
            self._not_before_us = now_us + int(self.retry_after.total_seconds() * US_PER_SECOND)
            log.warning(
                "refit failed: the fit process ended with code %s after %.1f s without a report; next try "
                "in %s",
                child.exitcode,
                seconds,
                format_duration(self.retry_after),
                extra={"fields": {"exitcode": child.exitcode, "seconds": round(seconds, 1)}},
            )
            return
        self.outcomes.extend(outcomes)
        if any(o.status == "failed" for o in outcomes):
            self._not_before_us = now_us + int(self.retry_after.total_seconds() * US_PER_SECOND)
        for o in outcomes:
            fields = {"model": f"{o.event}.{o.value}", "status": o.status, "seconds": round(o.seconds, 1)}
            if o.status == "kept":
                log.info(
                    "refit kept: fit %d of %s.%s on %d customers in %.1f s; read from the next tick",
                    o.fit_id,
                    o.event,
                    o.value,
                    o.customers,
                    o.seconds,
                    extra={"fields": {**fields, "fit": o.fit_id, "customers": o.customers}},
                )
            elif o.status == "skipped":
                log.info("refit of %s.%s left to another worker: %s", o.event, o.value, o.detail,
                         extra={"fields": fields})  # fmt: skip
            else:
                log.warning(
                    "refit failed: %s.%s: %s; next try in %s",
                    o.event,
                    o.value,
                    o.detail,
                    format_duration(self.retry_after),
                    extra={"fields": {**fields, "reason": o.detail}},
                )

    def stop(self) -> None:
        """Stop a child still fitting (it keeps nothing half-done)."""
        child, self._child = self._child, None
        if child is None:
            return
        if child.is_alive():
            child.terminate()
            child.join(STOP_SECONDS)
            if child.is_alive():
                child.kill()
                child.join()
            log.info("refit stopped with the daemon: %s", ", ".join(f"{e}.{v}" for e, v in self._models))
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None


def fit_in_child(url: str, models: list[Model], calibration_end: date, fitted_us: int, out: Pipe) -> None:
    """The child's work: fit and keep each model, then send one report (a list of ``RefitOutcome``
    fields) down the pipe. Runs in a spawned interpreter: Ctrl-C is the daemon's to handle, and the
    output (PyMC's compiler notes) is discarded."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(10)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        outcomes = _fit_models(url, models, calibration_end, fitted_us)
    except Exception as exc:
        outcomes = [RefitOutcome(e, v, "failed", f"{type(exc).__name__}: {exc}") for e, v in models]
    out.send([vars(o) for o in outcomes])
    out.close()


def _fit_models(url: str, models: list[Model], calibration_end: date, fitted_us: int) -> list[RefitOutcome]:
    from orchestrator.store import _leases as leases
    from orchestrator.store import open_store

    store = open_store(url, create=False)
    try:
        with leases.session_singleton(store.engine, "predict_fit") as mine:
            if not mine:
                return [RefitOutcome(e, v, "skipped", "another worker is fitting") for e, v in models]
            return fit_and_keep(store, models, calibration_end, fitted_us)
    finally:
        store.dispose()


def fit_and_keep(
    store: Store, models: Sequence[Model], calibration_end: date, fitted_us: int
) -> list[RefitOutcome]:
    """Fit each model on the store's purchases up to ``calibration_end`` (included) and keep the fit, made
    at ``fitted_us``; what came of each (``kept``, or ``failed`` with the reason)."""
    from orchestrator.errors import InvalidInputError, SetupError
    from orchestrator.predict import fit_history, save_fit

    outcomes = []
    for event, value in models:
        started = time.perf_counter()
        try:
            report = fit_history(store, calibration_end, event=event, value=value)
            fit_id = save_fit(store, report, fitted_us)
        except (InvalidInputError, SetupError) as exc:
            outcomes.append(RefitOutcome(event, value, "failed", str(exc)))
            continue
        except Exception as exc:
            outcomes.append(RefitOutcome(event, value, "failed", f"{type(exc).__name__}: {exc}"))
            continue
        seconds = time.perf_counter() - started
        outcomes.append(RefitOutcome(event, value, "kept", "", fit_id, report.fitted.customers, seconds))
    return outcomes
