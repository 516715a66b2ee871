"""A small world for time-travel tests of journeys: a real SQLite file, journey and template files on disk,
a simulated clock, and a delivery adapter (in memory, or the file outbox) that records what was sent."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from orchestrator.channels.base import Adapter, ChannelRouter, OutgoingMessage
from orchestrator.channels.memory import MemoryAdapter
from orchestrator.clock import SimulatedClock, from_us, to_us
from orchestrator.engine.tick import Engine, TickReport
from orchestrator.engine.workspace import load_workspace
from orchestrator.ingest import ingest_events_records
from orchestrator.store import Store, open_store, sqlite_url
from orchestrator.store.customers import upsert_customers

#: A recorded yes on every channel: a customer without consent on record gets no marketing message.
CONSENTED: dict[str, Any] = {"consent_email": True, "consent_sms": True, "consent_push": True}


def default_store_url(folder: Path) -> str:
    return sqlite_url(folder / "world.db")


#: Where a World keeps its store; the PostgreSQL runs of the suite replace it with a fresh database.
store_url: Callable[[Path], str] = default_store_url


def at(text_: str) -> datetime:
    """An instant from ISO text (``Z`` allowed)."""
    return datetime.fromisoformat(text_.replace("Z", "+00:00")).astimezone(UTC)


def event(cid: str, name: str, when: datetime, **props: Any) -> dict[str, Any]:
    return {"customer_id": cid, "event": name, "ts": when, "properties": props}


def write_files(root: Path, files: dict[str, str]) -> None:
    for name, body in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body))


class World:
    """Journeys under ``journeys`` (file or folder), a store in ``folder``, ticks on a simulated clock."""

    def __init__(
        self,
        folder: Path,
        journeys: Path | list[Path],
        start: datetime,
        customers: list[dict[str, Any]] | None = None,
        adapter: Adapter | None = None,
    ) -> None:
        self.folder = folder
        self.journeys = journeys
        self.store: Store = open_store(store_url(folder))
        self.clock = SimulatedClock(start)
        self.adapter = adapter if adapter is not None else MemoryAdapter()
        if customers:
            with self.store.begin() as conn:
                upsert_customers(conn, customers, now_us=to_us(start))
        self.engine = self._engine()
        self.reports: list[TickReport] = []

    def _engine(self) -> Engine:
        paths = self.journeys if isinstance(self.journeys, list) else [self.journeys]
        return Engine(self.store, load_workspace(paths), ChannelRouter([self.adapter]), self.clock)

    def restart(self, journeys: Path | list[Path] | None = None) -> None:
        """A new engine on the same store, as after a process restart (optionally with other files)."""
        if journeys is not None:
            self.journeys = journeys
        self.engine = self._engine()

    def events(self, *records: dict[str, Any]) -> None:
        report = ingest_events_records(self.store, list(records), now_us=to_us(self.clock.now()))
        assert report.rejected == 0, report.examples

    def tick(self) -> TickReport:
        report = self.engine.tick()
        self.reports.append(report)
        return report

    def run_until(self, end: datetime, step: timedelta = timedelta(hours=1)) -> None:
        """Tick at the clock's instant, then every ``step``, up to and including ``end``; the clock is left
        at the next instant due for a tick."""
        while self.clock.now() <= end:
            self.tick()
            self.clock.advance(step)

    def sent(self, customer: str | None = None, step: str | None = None) -> list[OutgoingMessage]:
        """Messages delivered (status ``sent`` in the ledger), in order, as the adapter received them."""
        rows = self.rows(
            "SELECT m.idempotency_key, m.channel, m.recipient, c.id, m.journey_id, m.step, m.body, "
            "m.subject, m.html, m.title, m.link, m.created_us FROM messages m "
            "JOIN customers c ON c.key = m.customer_key WHERE m.status = 'sent' ORDER BY m.created_us, m.id"
        )
        messages = [OutgoingMessage(*row) for row in rows]
        return [
            m
            for m in messages
            if (customer is None or m.customer_id == customer) and (step is None or m.step == step)
        ]

    def sends(self) -> dict[str, list[tuple[str, datetime]]]:
        """Per customer id, the (step, instant) of each ledger row queued or sent, in order."""
        out: dict[str, list[tuple[str, datetime]]] = {}
        for cid, step, created in self.rows(
            "SELECT c.id, m.step, m.created_us FROM messages m JOIN customers c ON c.key = m.customer_key "
            "WHERE m.status IN ('queued', 'sent') ORDER BY m.created_us, m.id"
        ):
            out.setdefault(cid, []).append((step, from_us(created)))
        return out

    def instances(self, customer: str | None = None) -> list[dict[str, Any]]:
        rows = self.rows(
            "SELECT c.id, i.version, i.state, i.status, i.exit_reason, i.entry_key, i.holdout, i.entered_us "
            "FROM journey_instances i JOIN customers c ON c.key = i.customer_key ORDER BY i.id"
        )
        out = [
            {
                "customer": r[0],
                "version": r[1],
                "state": r[2],
                "status": r[3],
                "reason": r[4],
                "key": r[5],
                "holdout": bool(r[6]),
                "entered": from_us(r[7]),
            }
            for r in rows
        ]
        return [r for r in out if customer is None or r["customer"] == customer]

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.store.connect() as conn:
            return list(conn.execute(text(sql), params).all())

    def close(self) -> None:
        self.store.dispose()
