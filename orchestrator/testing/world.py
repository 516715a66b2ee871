"""``World``: one journey workspace, one store and one simulated clock, ticked by hand.

A test writes its journey, template and policy files into the world's folder (or points it at existing
ones), adds customers and events at instants, runs ticks, then reads what the engine did from the store:

    world = World(tmp_path)                       # SQLite file in tmp_path, clock at T0
    world.write_files({"journeys/cart.yaml": CART, "templates/cart/reminder.txt": "Hi {{ customer.id }}"})
    world.add_customers(customer("ann"))
    world.add_events(event("ann", "add_to_cart", T0))
    world.run_for("1d")                           # a tick every hour
    world.assert_sent("ann", "reminder")

Messages go to a ``MemoryAdapter`` (``world.adapter``) unless another adapter is given; ``sent()`` reads
the ledger's delivered rows, ``adapter.sent`` what the adapter received. The engine is built at the first
tick from the files then on disk; ``restart()`` builds a new one on the same store, as after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from orchestrator.channels import Adapter, ChannelRouter, MemoryAdapter, OutgoingMessage
from orchestrator.clock import from_us, to_us
from orchestrator.engine import Engine, TickReport, Workspace, load_workspace
from orchestrator.ingest import ingest_events_records
from orchestrator.store import (
    ConversionRow,
    LedgerRow,
    Store,
    SuppressionRow,
    conversion_rows,
    funnel_counts,
    instance_rows,
    ledger_rows,
    open_store,
    query_rows,
    sqlite_url,
    suppression_rows,
    upsert_customers,
)
from orchestrator.testing.clock import SimClock, duration
from orchestrator.testing.factories import write_files


@dataclass(frozen=True)
class Instance:
    """One customer's trip through a journey version, as stored."""

    customer: str
    journey: str
    version: int
    state: str
    status: str  # active | completed | exited | converted
    reason: str | None  # why it exited (exit reason), if it did
    key: str | None  # event entry: the correlation key's value
    holdout: bool
    entered: datetime
    exited: datetime | None = None  # when it finished, if it did


class World:
    """Journeys, a store and a simulated clock; a tick whenever the test says.

    ``folder`` holds the files (journeys default to ``folder/journeys``); ``store`` is a store URL or an
    open ``Store`` (default: a SQLite file ``folder/world.db``; a URL given is opened here and disposed by
    ``close``, a ``Store`` given is left open); ``clock`` defaults to ``SimClock(T0)``; ``adapter`` to a
    new ``MemoryAdapter``; ``workspace`` is loaded journeys to run instead of the files (``journeys``);
    ``engine_options`` go to ``Engine`` (``global_holdout``, ``delivery``, ``links``).
    """

    def __init__(
        self,
        folder: Path,
        *,
        store: Store | str | None = None,
        clock: SimClock | None = None,
        journeys: Path | list[Path] | None = None,
        adapter: Adapter | None = None,
        workspace: Workspace | None = None,
        **engine_options: Any,
    ) -> None:
        self.folder = folder
        self.journeys: Path | list[Path] = journeys if journeys is not None else folder / "journeys"
        self._owns_store = not isinstance(store, Store)
        self.store: Store = (
            store if isinstance(store, Store) else open_store(store or sqlite_url(folder / "world.db"))
        )
        self.clock = clock if clock is not None else SimClock()
        self.adapter: Adapter = adapter if adapter is not None else MemoryAdapter()
        self.engine_options = engine_options
        self.workspace = workspace
        self.reports: list[TickReport] = []
        self._engine: Engine | None = None

    # ------------------------------------------------------------------------------------------ set-up

    def write_files(self, files: dict[str, str]) -> None:
        """Write ``relative path -> text`` under the folder (journeys, templates, policy, config)."""
        write_files(self.folder, files)

    def add_customers(self, *rows: dict[str, Any]) -> None:
        """Insert or update customers (rows as ``customer()`` builds them), stamped at the clock's instant."""
        with self.store.begin() as conn:
            upsert_customers(conn, list(rows), now_us=to_us(self.clock.now()))

    def add_events(self, *records: dict[str, Any]) -> None:
        """Ingest events (records as ``event()`` builds them); a rejected record fails the test."""
        report = ingest_events_records(self.store, list(records), now_us=to_us(self.clock.now()))
        if report.rejected:
            raise AssertionError(f"{report.rejected} event(s) rejected: {report.examples}")

    # ------------------------------------------------------------------------------------------ time

    @property
    def engine(self) -> Engine:
        """The engine, built from the journey files on first use (and after ``restart``)."""
        if self._engine is None:
            paths = self.journeys if isinstance(self.journeys, list) else [self.journeys]
            router = ChannelRouter([self.adapter])
            workspace = self.workspace if self.workspace is not None else load_workspace(paths)
            self._engine = Engine(self.store, workspace, router, self.clock, **self.engine_options)
        return self._engine

    def restart(self, journeys: Path | list[Path] | None = None) -> None:
        """A new engine on the same store, as after a process restart (optionally with other files)."""
        if journeys is not None:
            self.journeys = journeys
            self.workspace = None
        self._engine = None

    def tick(self) -> TickReport:
        """One tick at the clock's instant."""
        report = self.engine.tick()
        self.reports.append(report)
        return report

    def advance(self, delta: str | timedelta) -> datetime:
        """Move the clock forward (``"2h"`` or a timedelta) without ticking; returns the new instant."""
        return self.clock.advance(delta)

    def run_until(self, end: datetime, step: str | timedelta = timedelta(hours=1)) -> None:
        """Tick at the clock's instant, then every ``step``, up to and including ``end``; the clock is left
        at the next instant due for a tick."""
        every = duration(step)
        while self.clock.now() <= end:
            self.tick()
            self.clock.advance(every)

    def run_for(self, span: str | timedelta, step: str | timedelta = timedelta(hours=1)) -> None:
        """``run_until`` the clock's instant plus ``span`` (``"3d"`` ticks 73 times an hour apart)."""
        self.run_until(self.clock.now() + duration(span), step)

    # ------------------------------------------------------------------------------------------ reading

    def messages(self, customer: str | None = None, status: str | None = None) -> list[LedgerRow]:
        """Ledger rows (any status, or ``status``), in the order written, optionally of one customer."""
        with self.store.connect() as conn:
            found = ledger_rows(conn)
        return [
            m
            for m in found
            if (customer is None or m.customer_id == customer) and (status is None or m.status == status)
        ]

    def sent(self, customer: str | None = None, step: str | None = None) -> list[OutgoingMessage]:
        """Messages delivered (status ``sent`` in the ledger), in order, as the adapter received them."""
        return [
            OutgoingMessage(
                m.idempotency_key,
                m.channel,
                m.recipient or "",
                m.customer_id,
                m.journey_id,
                m.step,
                m.body or "",
                m.subject,
                m.html,
                m.title,
                m.link,
                m.created_us,
            )
            for m in self.messages(customer, "sent")
            if step is None or m.step == step
        ]

    def sends(self) -> dict[str, list[tuple[str, datetime]]]:
        """Per customer id, the (step, instant) of each ledger row queued or sent, in order."""
        out: dict[str, list[tuple[str, datetime]]] = {}
        for m in self.messages():
            if m.status in ("queued", "sent"):
                out.setdefault(m.customer_id, []).append((m.step, from_us(m.created_us)))
        return out

    def instances(
        self, customer: str | None = None, *, entered_since: datetime | None = None
    ) -> list[Instance]:
        """Journey instances in the order they were created, optionally of one customer, optionally only
        those that entered at ``entered_since`` or later."""
        with self.store.connect() as conn:
            found = instance_rows(conn, None if entered_since is None else to_us(entered_since))
        return [
            Instance(
                r.customer_id,
                r.journey_id,
                r.version,
                r.state,
                r.status,
                r.exit_reason,
                r.entry_key,
                r.holdout,
                from_us(r.entered_us),
                None if r.exited_us is None else from_us(r.exited_us),
            )
            for r in found
            if customer is None or r.customer_id == customer
        ]

    def transitions_taken(self, journey: str) -> set[tuple[str, str]]:
        """The (step, trigger) transitions the journey's instances took (any version or arm), from the
        per-step funnel's counts in the store: ``next``, ``yes``, ``no``, ``split-<n>``, ``goal``, and
        ``entry``, ``exit_when``, ``retired``, ``migrated`` (see ``orchestrator.measure.journey_funnel``)."""
        with self.store.connect() as conn:
            return {(c.source, c.trigger) for c in funnel_counts(conn, journey) if c.n}

    def conversions(self) -> list[ConversionRow]:
        """Conversions recorded (both arms), in the order of the instances converted."""
        with self.store.connect() as conn:
            return conversion_rows(conn)

    def suppressions(self) -> list[SuppressionRow]:
        """Addresses suppressed for good (a hard bounce, an invalid number), by channel and address."""
        with self.store.connect() as conn:
            return suppression_rows(conn)

    def rows(self, sql: str, **params: Any) -> list[Any]:
        """The rows of a read query on the store, for what the helpers above do not cover."""
        with self.store.connect() as conn:
            return query_rows(conn, sql, params)

    # ------------------------------------------------------------------------------------------ asserting

    def assert_sent(self, customer: str, step: str | None = None, count: int | None = None) -> None:
        """``customer`` was sent at least one message (of ``step``), or exactly ``count`` when given."""
        found = self.sent(customer, step)
        what = f"{customer}" + (f" at step {step!r}" if step else "")
        if (count is None and not found) or (count is not None and len(found) != count):
            expected = "at least one message" if count is None else f"{count} message(s)"
            raise AssertionError(f"expected {expected} sent to {what}, found {len(found)}; {self._summary()}")

    def assert_not_sent(self, customer: str, step: str | None = None) -> None:
        """No message (of ``step``) was sent to ``customer``."""
        self.assert_sent(customer, step, count=0)

    def assert_held_out(self, customer: str, journey: str | None = None, held_out: bool = True) -> None:
        """``customer`` entered (``journey``, or their only journey) in the holdout arm (or, with
        ``held_out=False``, in the treated arm)."""
        found = [i for i in self.instances(customer) if journey is None or i.journey == journey]
        if not found:
            raise AssertionError(f"{customer} never entered {journey or 'a journey'}")
        arms = {i.holdout for i in found}
        if arms != {held_out}:
            arm = "the holdout" if held_out else "the treated arm"
            raise AssertionError(f"expected {customer} in {arm}, found instances {found}")

    def _summary(self) -> str:
        sent = [(m.customer_id, m.step) for m in self.sent()]
        return f"sent (customer, step): {sent}" if sent else "nothing was sent"

    # ------------------------------------------------------------------------------------------ closing

    def close(self) -> None:
        """Dispose of the store if this world opened it."""
        if self._owns_store:
            self.store.dispose()

    def __enter__(self) -> World:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
