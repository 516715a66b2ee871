"""The service's Prometheus metrics.

Two kinds, on a registry of the app's own:

- counted in this process: API requests by route and status and their seconds, the calls they brought
  by type and outcome, and the group commits;
- read from the store at each scrape (the engine runs in other processes): the ticks stored since this
  process started, their seconds by phase and the entries they made (counters, from the ticks' reports,
  reading only the ticks that are new since the last scrape), the last tick's time and phases, the
  ledger by channel and status, the outbox backlog and the journeys marked failed (gauges).

A scrape whose store reads fail still answers, with ``orchestrator_store_up 0``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from orchestrator.clock import Clock, to_us
from orchestrator.durations import US_PER_SECOND
from orchestrator.store import (
    Store,
    StoredTick,
    failed_journeys,
    is_database_error,
    last_tick,
    last_tick_id,
    message_counts,
    outbox_backlog,
    ticks_after,
)

log = logging.getLogger("orchestrator.http")
# The ``_created`` series (when each counter began) would double every scrape for little use.
disable_created_metrics()

#: Request seconds: loopback calls take a millisecond or so; a slow store shows up in the upper buckets.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
GROUP_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
#: Ticks read per scrape at most (a long pause between scrapes is caught up over the next ones).
TICKS_PER_SCRAPE = 5000


class ApiMetrics:
    """The in-process counters of the HTTP service."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "orchestrator_api_requests",
            "HTTP requests answered, by route and status code.",
            ["route", "status"],
            registry=registry,
        )
        self.seconds = Histogram(
            "orchestrator_api_request_seconds",
            "Seconds from a request's arrival to its answer, by route.",
            ["route"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.calls = Counter(
            "orchestrator_api_calls",
            "Calls (events and identifies) taken by the event API, by type and outcome: accepted (stored), "
            "duplicate (messageId stored before), stale (identify older than the stored record), rejected.",
            ["type", "outcome"],
            registry=registry,
        )
        self.commits = Counter(
            "orchestrator_api_commits",
            "Transactions the event API committed (group commits).",
            registry=registry,
        )
        self.group_requests = Histogram(
            "orchestrator_api_commit_requests",
            "Requests that shared one commit.",
            buckets=GROUP_BUCKETS,
            registry=registry,
        )

    def committed(self, requests: int, _calls: int) -> None:
        self.commits.inc()
        self.group_requests.observe(requests)


class StoreCollector(Collector):
    """Reads the store at each scrape (see the module's docstring)."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._lock = threading.Lock()
        self._after_id: int | None = None  # the last tick counted
        self._ticks = 0
        self._phase_seconds: dict[str, float] = {}
        self._entries: dict[tuple[str, str], int] = {}

    def start(self) -> None:
        """Count the ticks stored from now on."""
        try:
            with self.store.connect() as conn:
                self._after_id = last_tick_id(conn)
        except Exception as exc:
            if not is_database_error(exc):
                raise
            self._after_id = None  # the first scrape that reaches the store starts the count

    def describe(self) -> list[Metric]:
        return []  # collected at each scrape; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            try:
                read = self._read()
            except Exception as exc:
                if not is_database_error(exc):
                    raise
                log.warning("a metrics scrape could not read the store: %s", type(exc).__name__)
                read = None
            up = GaugeMetricFamily("orchestrator_store_up", "1 when this scrape read the store, else 0.")
            up.add_metric([], 0 if read is None else 1)
            yield up
            yield from self._tick_counters()
            if read is not None:
                yield from read

    def _read(self) -> list[Metric]:
        with self.store.connect() as conn:
            if self._after_id is None:
                self._after_id = last_tick_id(conn)
            new = ticks_after(conn, self._after_id, TICKS_PER_SCRAPE)
            last = last_tick(conn)
            messages = message_counts(conn)
            backlog = outbox_backlog(conn)
            failed = failed_journeys(conn)
        for tick in new:
            self._count(tick)
        now_us = to_us(self.clock.now())
        out: list[Metric] = []
        if last is not None:
            at = GaugeMetricFamily(
                "orchestrator_last_tick_timestamp_seconds", "When the latest tick ran (Unix time)."
            )
            at.add_metric([], last[0] / US_PER_SECOND)
            out.append(at)
            phases = GaugeMetricFamily(
                "orchestrator_last_tick_seconds", "Seconds the latest tick took, by phase.", labels=["phase"]
            )
            timings = json.loads(last[2]).get("timings", {})
            for phase, seconds in sorted(timings.items()):
                phases.add_metric([phase], float(seconds))
            out.append(phases)
        counts = GaugeMetricFamily(
            "orchestrator_messages",
            "Messages in the ledger by channel and status (sent, suppressed, failed, refused, queued, ...).",
            labels=["channel", "status"],
        )
        for (channel, status), n in messages.items():
            counts.add_metric([channel, status], n)
        out.append(counts)
        queued = GaugeMetricFamily(
            "orchestrator_outbox_backlog",
            "Messages waiting by channel and state: queued, sending (handed to the provider, answer not "
            "recorded), uncertain (in flight when an at_most_once dispatcher stopped).",
            labels=["channel", "state"],
        )
        oldest = GaugeMetricFamily(
            "orchestrator_outbox_oldest_seconds",
            "Age of the oldest message queued or sending, by channel.",
            labels=["channel"],
        )
        for b in backlog:
            queued.add_metric([b.channel, "queued"], b.queued)
            queued.add_metric([b.channel, "sending"], b.sending)
            queued.add_metric([b.channel, "uncertain"], b.uncertain)
            if b.queued or b.sending:
                oldest.add_metric([b.channel], max(0, now_us - b.oldest_us) / US_PER_SECOND)
        out += [queued, oldest]
        failing = GaugeMetricFamily(
            "orchestrator_failed_journeys", "Journeys marked failed at their last tick."
        )
        failing.add_metric([], len(failed))
        marked = GaugeMetricFamily(
            "orchestrator_journey_failed", "1 for each journey marked failed.", labels=["journey"]
        )
        for f in failed:
            marked.add_metric([f.journey_id], 1)
        out += [failing, marked]
        return out

    def _count(self, tick: StoredTick) -> None:
        self._after_id = max(self._after_id or 0, tick.id)
        self._ticks += 1
        try:
            summary: dict[str, Any] = json.loads(tick.summary)
        except ValueError:
            return
        for phase, seconds in (summary.get("timings") or {}).items():
            if isinstance(seconds, int | float):
                self._phase_seconds[phase] = self._phase_seconds.get(phase, 0.0) + float(seconds)
        for journey_id, result in (summary.get("journeys") or {}).items():
            if not isinstance(result, dict):
                continue
            entered = int(result.get("entered") or 0)
            held = int(result.get("entered_holdout") or 0)
            for arm, n in (("treatment", entered - held), ("holdout", held)):
                self._entries[(journey_id, arm)] = self._entries.get((journey_id, arm), 0) + n

    def _tick_counters(self) -> Iterator[Metric]:
        ticks = CounterMetricFamily("orchestrator_ticks", "Ticks stored since this process started.")
        ticks.add_metric([], self._ticks)
        yield ticks
        seconds = CounterMetricFamily(
            "orchestrator_tick_seconds",
            "Seconds spent in ticks stored since this process started, by phase (total: the whole tick).",
            labels=["phase"],
        )
        for phase, value in sorted(self._phase_seconds.items()):
            seconds.add_metric([phase], value)
        yield seconds
        entries = CounterMetricFamily(
            "orchestrator_entries",
            "Customers who entered a journey at the ticks stored since this process started, by journey "
            "and arm (treatment, holdout).",
            labels=["journey", "arm"],
        )
        for (journey_id, arm), n in sorted(self._entries.items()):
            entries.add_metric([journey_id, arm], n)
        yield entries
