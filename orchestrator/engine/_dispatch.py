"""Dispatch: queued ledger rows to channel adapters, after the tick's transaction has committed.

Stepping writes each message as a bare ledger row (key, journey, version, customer, instance, step,
channel, ``queued``). Dispatch takes the rows whose time has come in batches (``BATCH``, oldest first) and
for each batch:

1. refuses held-out customers (the holdout's second guard, whatever put their message in the queue);
2. applies the contact policy to the whole batch (``engine._contact_policy``): exclusions, consent,
   quiet hours, caps and journey priority; a suppressed message is recorded with the reason, a held one
   stays queued with ``next_attempt_us`` at the end of the quiet hours;
3. renders the rest in the template sandbox (the context checked once per message, with the customer's
   signed unsubscribe link as ``links.unsubscribe`` when ``links`` are configured), drops those whose
   address is on the suppression list, and in the HTML of marketing email turns links into tracked
   click links and adds the open pixel when tracking is configured (``channels._links``);
4. hands the messages to their adapters with the ledger key as idempotency key, a small group at a time
   (``group``, default 8, which grows for a fast provider on at_least_once channels and to the channel's
   concurrency: see ``_send_batch``). The calls run in ``channels._lanes``: per channel as many at once as
   its concurrency (``concurrency[channel]``, else the adapter's own from its provider settings, else
   ``workers``), since a provider call waits on the network and adapters are thread-safe; each adapter
   takes its provider's rate limit right before its call. Before a group is handed over, its rows are
   marked ``sending`` (with
   ``inflight_us`` and the attempt counted) in a commit of their own, which also records the outcomes of
   the group before it; so at any instant at most one group is handed over and not yet recorded. The
   outcomes: ``sent``; a transient failure goes back to ``queued`` with its next attempt after ``Backoff``
   (``failed`` once the attempts are spent); a permanent failure is ``failed`` with the reason, and one
   marked ``suppress`` puts the address on the suppression list.

A process that dies during a group's provider calls leaves those rows ``sending``. Every dispatch starts by
settling such rows (only one dispatcher runs at a time, so they belong to a dispatcher that stopped): on a
channel whose delivery mode is ``at_least_once`` (the default) they are queued again and sent with the same
key, which a provider honouring the key recognises and one ignoring it delivers a second time; on an
``at_most_once`` channel they are recorded ``uncertain`` and never sent again. ``stop`` (the daemon's second
stop signal) ends a dispatch after the group in flight is recorded; the rows not reached stay queued.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
from jinja2 import Template

from orchestrator.channels import (
    AT_MOST_ONCE,
    Backoff,
    ChannelLanes,
    ChannelRouter,
    DeliveryMode,
    DeliveryResult,
    MessageLinks,
    OutgoingMessage,
)
from orchestrator.channels.templates import TemplateRenderer
from orchestrator.clock import Clock, to_us
from orchestrator.durations import US_PER_SECOND
from orchestrator.engine._contact_policy import DELAY, SUPPRESS, WEEK_US, Batch, decide
from orchestrator.engine._render import ADDRESS_FIELD, message_row
from orchestrator.language import ENTRY, ContactPolicy, JourneyPlan, Send, StepPlan
from orchestrator.signals import to_python
from orchestrator.store import (
    DueMessage,
    Ownership,
    Store,
    customer_records,
    due_messages,
    instance_data,
    mark_in_flight,
    recent_sends,
    record_outcomes,
    settle_in_flight,
    suppress_addresses,
    suppressed_addresses,
)

BATCH = 1000


@dataclass
class DispatchReport:
    delivered: int = 0
    failed: int = 0
    retry: int = 0
    refused: int = 0
    suppressed: int = 0
    delayed: int = 0
    uncertain: int = 0  # at_most_once rows found in flight from a dispatcher that stopped: not resent
    requeued: int = 0  # at_least_once rows found in flight from a dispatcher that stopped: sent again
    stopped: bool = False  # cut short by ``stop``: rows not reached stay queued
    seconds: dict[str, float] = field(default_factory=dict)  # read, policy, render, send, record

    def add_seconds(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds


@dataclass
class DispatchContext:
    """What dispatch needs from the engine: the plan of a journey version (None when unknown), its
    renderer, its metric values by customer key, the contact policy, and the retry schedule. ``random``
    draws the backoff's jitter (seeded, so retry times are reproducible). ``delivery`` maps a channel to
    its delivery mode (a channel not named is ``at_least_once``); ``journeys``, when given, limits dispatch
    to those journeys' messages (the workspace's: the others stay queued until their journey returns);
    ``stop`` is asked before each group of provider calls, and true ends the dispatch; ``on_batch``, when
    given, is told after each batch how many messages were handled so far (for a progress bar). ``links``
    (from the workspace config's ``unsubscribe`` and ``tracking``, see ``channels._links.message_links``)
    gives templates ``links.unsubscribe`` and tracks marketing email. ``concurrency`` maps a channel to its
    provider calls in flight at once (a channel not named: its adapter's ``concurrency``, else
    ``workers``)."""

    plan_for: Callable[[str, int], JourneyPlan | None]
    renderer_for: Callable[[str], TemplateRenderer | None]
    metrics_for: Callable[[JourneyPlan], Mapping[str, np.ndarray]]
    policy: ContactPolicy | None = None
    backoff: Backoff = field(default_factory=Backoff)
    random: Callable[[], float] = field(default_factory=lambda: random.Random(0).random)
    workers: int = 4  # provider calls in flight per channel whose width nothing else sets; 1: one at a time
    concurrency: Mapping[str, int] = field(default_factory=dict)  # channel -> provider calls in flight
    group: int = 8  # messages marked in flight, handed over and recorded together
    max_group: int = 128  # at_least_once groups grow up to this while the provider is fast (see _send_batch)
    delivery: Mapping[str, DeliveryMode] = field(default_factory=dict)
    journeys: Collection[str] | None = None
    stop: Callable[[], bool] = field(default=lambda: False)
    on_batch: Callable[[int], object] | None = None
    links: MessageLinks | None = None
    ownership: Ownership | None = None  # a partitioned worker's: only its customers' messages


def dispatch_queued(
    store: Store, router: ChannelRouter, clock: Clock, context: DispatchContext, limit: int | None = None
) -> DispatchReport:
    """Handle every queued message that is due (up to ``limit``), batch by batch (see the module
    docstring); the instant is read from ``clock`` once."""
    with ChannelLanes(router, context.concurrency, default=context.workers) as lanes:
        return _dispatch_all(store, clock, context, limit, lanes)


def _dispatch_all(
    store: Store,
    clock: Clock,
    context: DispatchContext,
    limit: int | None,
    lanes: ChannelLanes,
) -> DispatchReport:
    report = DispatchReport()
    now_us = to_us(clock.now())
    at_most_once = [channel for channel, mode in context.delivery.items() if mode == AT_MOST_ONCE]
    with store.begin() as conn:
        report.requeued, report.uncertain = settle_in_flight(conn, at_most_once, context.ownership)
    handled = 0
    last_id = 0
    while limit is None or handled < limit:
        if context.stop():
            report.stopped = True
            break
        size = BATCH if limit is None else min(BATCH, limit - handled)
        started = time.perf_counter()
        with store.connect() as conn:
            batch = due_messages(
                conn, size, now_us, after_id=last_id, journeys=context.journeys, ownership=context.ownership
            )
            if not batch:
                break
            loaded = _load(conn, batch, context, now_us)
        report.add_seconds("read", time.perf_counter() - started)
        decided, to_send = _decide_batch(batch, loaded, context, now_us, report)
        _send_batch(store, decided, to_send, context, now_us, report, lanes)
        handled += len(batch)
        last_id = batch[-1].id
        if context.on_batch is not None:
            context.on_batch(handled)
    return report


def _send_batch(
    store: Store,
    decided: list[dict[str, Any]],
    to_send: list[tuple[DueMessage, dict[str, Any]]],
    context: DispatchContext,
    now_us: int,
    report: DispatchReport,
    lanes: ChannelLanes,
) -> None:
    """Hand ``to_send`` over group by group. Each commit records what is known (the batch's decided
    outcomes, the previous group's answers) and marks the next group ``sending``; the last one records the
    last group. Rows of groups not reached (``stop``) stay queued.

    Messages of ``at_most_once`` channels go first, in groups of ``group``. The others start at ``group``
    or at the widest concurrency of their channels, whichever is larger (a provider taking 128 calls at
    once gets groups that fill its lanes), and the group doubles (up to ``max_group``, or that concurrency
    when larger) while the commit costs more than a tenth of the provider calls it brackets, and halves
    back when it does not: a slow provider (the network) keeps the smallest window, a fast one (the file
    outbox, which also drops a repeated key) does not pay a commit per eight files. An adapter that asks
    for larger groups (its ``group``, see ``ChannelLanes.group``: the spooled outbox, one spool per group)
    starts there when every relaxed channel asks. So the rows in doubt after a crash are at most one
    group: ``group`` on at_most_once channels, and on the others the largest of ``max_group``, the
    channels' concurrency and their adapters' ``group``. Each message handed over says whether it is a
    first attempt (``OutgoingMessage.first_attempt``): read with no attempt and marked now."""
    strict = [item for item in to_send if context.delivery.get(item[0].channel) == AT_MOST_ONCE]
    relaxed = [item for item in to_send if context.delivery.get(item[0].channel) != AT_MOST_ONCE]
    ordered = strict + relaxed
    outcomes = decided
    suppressions: list[dict[str, Any]] = []
    base = max(1, context.group)
    channels = {m.channel for m, _ in relaxed}
    widest = max((lanes.width(channel) for channel in channels), default=1)
    floor = max(base, widest, min((lanes.group(channel) for channel in channels), default=0))
    ceiling = max(context.max_group, floor)
    size = floor
    start = 0
    while True:
        fixed = start < len(strict)
        end = min(start + base, len(strict)) if fixed else start + size
        group = ordered[start:end]
        start = end
        if group and context.stop():
            report.stopped = True
            group = []
        started = time.perf_counter()
        with store.begin() as conn:
            record_outcomes(conn, outcomes)
            suppress_addresses(conn, suppressions)
            if group:
                marked = mark_in_flight(
                    conn, [m.id for m, _ in group], [m.attempts + 1 for m, _ in group], now_us
                )
        commit_s = time.perf_counter() - started
        report.add_seconds("record", commit_s)
        if not group:
            return
        outcomes, suppressions = [], []
        started = time.perf_counter()
        # A row read with no attempt and marked now was never handed to an adapter: its adapter may skip
        # looking its key up (``OutgoingMessage.first_attempt``). Any doubt (a row not marked): no promise.
        promise = marked == len(group)
        outgoing = [_outgoing(m, row, promise and m.attempts == 0) for m, row in group]
        # Provider calls wait on the network (or the disk): several run at once; outcomes are read in order.
        results = lanes.send_all(outgoing)
        for (m, row), result in zip(group, results, strict=True):
            outcomes.append(_record(m, row, result, context, now_us, report, suppressions))
        send_s = time.perf_counter() - started
        report.add_seconds("send", send_s)
        if not fixed and len(group) == size:
            size = min(size * 2, ceiling) if commit_s * 10 > send_s else max(floor, size // 2)


@dataclass
class _Loaded:
    records: dict[int, dict[str, Any]]
    recent: tuple[np.ndarray, np.ndarray, np.ndarray]
    data: dict[int, str | None]
    suppressed: dict[tuple[str, str], str]


def _load(conn: Any, batch: list[DueMessage], context: DispatchContext, now_us: int) -> _Loaded:
    keys = [m.customer_key for m in batch]
    records = customer_records(conn, keys)
    # A local week starts at most 8 days before now, whatever the zone.
    recent = recent_sends(conn, keys, now_us - WEEK_US - 86400 * US_PER_SECOND)
    wants_data = []
    addresses: dict[str, list[str]] = {}
    captures: dict[tuple[str, int], bool] = {}  # by journey version, asked once a batch
    for m in batch:
        version = (m.journey_id, m.version)
        if version not in captures:
            plan = context.plan_for(m.journey_id, m.version)
            captures[version] = plan is not None and bool(plan.captures or plan.entry.kind == "event")
        if captures[version]:
            wants_data.append(m.instance_id)
        record = records.get(m.customer_key, {})
        address = record.get(ADDRESS_FIELD.get(m.channel, ""))
        if address:
            addresses.setdefault(m.channel, []).append(str(address))
    data = instance_data(conn, wants_data) if wants_data else {}
    suppressed = {
        (channel, address): reason
        for channel, listed in addresses.items()
        for address, reason in suppressed_addresses(conn, channel, listed).items()
    }
    return _Loaded(records, recent, data, suppressed)


def _outcome(m: DueMessage, status: str, reason: str | None, **fields: Any) -> dict[str, Any]:
    row = {
        "id": m.id,
        "status": status,
        "reason": reason,
        "recipient": None,
        "subject": None,
        "body": None,
        "html": None,
        "title": None,
        "link": None,
        "provider_id": None,
        "sent_us": None,
        "attempts": m.attempts,
        "next_attempt_us": None,
    }
    row.update(fields)
    return row


def _decide_batch(
    batch: list[DueMessage],
    loaded_rows: _Loaded,
    context: DispatchContext,
    now_us: int,
    report: DispatchReport,
) -> tuple[list[dict[str, Any]], list[tuple[DueMessage, dict[str, Any]]]]:
    """The batch's outcomes decided without a provider (holdout, policy, template, suppression list) and
    the rendered messages to send."""
    outcomes: list[dict[str, Any]] = []
    started = time.perf_counter()
    steps: list[tuple[JourneyPlan, StepPlan] | None] = []
    sends_at: dict[tuple[str, int, str], tuple[JourneyPlan, StepPlan] | None] = {}  # looked up once a batch
    for m in batch:
        where = (m.journey_id, m.version, m.step)
        if where not in sends_at:
            plan = context.plan_for(m.journey_id, m.version)
            sends = (s for s in plan.steps if s.id == m.step and s.send is not None) if plan else iter(())
            step = next(sends, None)
            sends_at[where] = (plan, step) if plan is not None and step is not None else None
        steps.append(sends_at[where])
    open_ = np.ones(len(batch), bool)
    for i, m in enumerate(batch):
        if m.held_out:
            report.refused += 1
            outcomes.append(_outcome(m, "refused", "customer is in the holdout"))
            open_[i] = False
        elif steps[i] is None:
            report.failed += 1
            outcomes.append(_outcome(m, "failed", f"no send step {m.step!r} in {m.journey_id} v{m.version}"))
            open_[i] = False
    idx = np.flatnonzero(open_)
    pending = [batch[i] for i in idx]
    decisions = decide(
        context.policy,
        Batch(
            channel=np.array([m.channel for m in pending], dtype=object),
            customer_key=np.array([m.customer_key for m in pending], dtype=np.int64),
            priority=np.array([steps[i][0].priority for i in idx], dtype=np.int64),  # type: ignore[index]
            transactional=np.array([m.transactional for m in pending], dtype=bool),
            order=np.array([m.id for m in pending], dtype=np.int64),
        ),
        loaded_rows.records,
        loaded_rows.recent,
        now_us,
    )
    report.add_seconds("policy", time.perf_counter() - started)
    to_send: list[tuple[DueMessage, dict[str, Any]]] = []
    render_started = time.perf_counter()
    metric_cache: dict[int, Mapping[str, np.ndarray]] = {}
    loaded: dict[int, dict[str, Template]] = {}  # each renderer's templates, compiled once per batch
    step_renders: dict[tuple[int, int, str], _StepRender] = {}
    for j, m in enumerate(pending):
        action = int(decisions.action[j])
        if action == SUPPRESS:
            report.suppressed += 1
            outcomes.append(_outcome(m, "suppressed", decisions.reason[j]))
            continue
        if action == DELAY:
            report.delayed += 1
            until = int(decisions.until_us[j])
            outcomes.append(
                _outcome(m, "queued", f"{decisions.reason[j]} until {_iso(until)}", next_attempt_us=until)
            )
            continue
        found = steps[idx[j]]
        assert found is not None
        plan, step = found
        row = _render(m, plan, step, loaded_rows, context, metric_cache, loaded, step_renders)
        if row["status"] != "queued":
            report.suppressed += row["status"] == "suppressed"
            report.failed += row["status"] == "failed"
            outcomes.append(_outcome(m, row["status"], row["reason"], recipient=row["recipient"]))
            continue
        listed = loaded_rows.suppressed.get((m.channel, row["recipient"]))
        if listed is not None:
            report.suppressed += 1
            outcomes.append(
                _outcome(
                    m, "suppressed", f"address on the suppression list: {listed}", recipient=row["recipient"]
                )
            )
            continue
        row["customer_id"] = loaded_rows.records[m.customer_key]["id"]
        if row["html"] and m.channel == "email" and not m.transactional and context.links is not None:
            row["html"] = context.links.track(row["html"], m.id)
        to_send.append((m, row))
    report.add_seconds("render", time.perf_counter() - render_started)
    return outcomes, to_send


@dataclass
class _StepRender:
    """What every message of one send step on one channel shares when it is rendered (made once a batch)."""

    renderer: TemplateRenderer | None
    send: Send
    metrics: Mapping[str, np.ndarray]
    roots: list[str]
    journey: dict[str, Any]
    templates: dict[str, Template]


def _render(
    m: DueMessage,
    plan: JourneyPlan,
    step: StepPlan,
    loaded: _Loaded,
    context: DispatchContext,
    metric_cache: dict[int, Mapping[str, np.ndarray]],
    templates: dict[int, dict[str, Template]],
    steps: dict[tuple[int, int, str], _StepRender],
) -> dict[str, Any]:
    assert step.send is not None
    how = steps.get((id(plan), id(step), m.channel))
    if how is None:
        renderer = context.renderer_for(plan.id)
        if id(plan) not in metric_cache:
            metric_cache[id(plan)] = context.metrics_for(plan) if plan.metrics else {}
        how = _StepRender(
            renderer=renderer,
            send=step.send.on_channel(m.channel),
            metrics=metric_cache[id(plan)],
            roots=[ENTRY, *plan.captures] if plan.entry.kind == "event" else list(plan.captures),
            journey={"id": plan.id, "version": plan.version, "step": step.id},
            templates=templates.setdefault(id(renderer), {}),
        )
        steps[(id(plan), id(step), m.channel)] = how
    customer = loaded.records.get(m.customer_key)
    if how.renderer is None or customer is None:
        return {"status": "failed", "recipient": None, "reason": "no templates or no customer record"}
    metrics = {name: to_python(values[m.customer_key]) for name, values in how.metrics.items()}
    extra: dict[str, Any] = {}
    if how.roots:
        raw = loaded.data.get(m.instance_id)
        data = orjson.loads(raw) if raw else {}
        data = data if isinstance(data, dict) else {}
        extra = {root: data.get(root, {}) for root in how.roots}
    links = context.links.for_template(str(customer["id"]), m.channel) if context.links is not None else None
    return message_row(
        renderer=how.renderer,
        send=how.send,
        customer=customer,
        metrics=metrics,
        journey=how.journey,
        extra=extra,
        base={},
        links=links,
        loaded=how.templates,
    )


def _outgoing(m: DueMessage, row: dict[str, Any], first_attempt: bool = False) -> OutgoingMessage:
    return OutgoingMessage(
        idempotency_key=m.idempotency_key,
        channel=m.channel,
        recipient=row["recipient"],
        customer_id=str(row["customer_id"]),
        journey_id=m.journey_id,
        step=m.step,
        body=row["body"] or "",
        subject=row["subject"],
        html=row["html"],
        title=row["title"],
        link=row["link"],
        created_us=m.created_us,
        transactional=m.transactional,
        first_attempt=first_attempt,
    )


def _record(
    m: DueMessage,
    row: dict[str, Any],
    result: DeliveryResult,
    context: DispatchContext,
    now_us: int,
    report: DispatchReport,
    suppressions: list[dict[str, Any]],
) -> dict[str, Any]:
    """The ledger outcome of one provider answer (and the address to suppress, if it says so)."""
    attempts = m.attempts + 1
    if result.status == "sent":
        report.delivered += 1
        # The common case, as one dict (what ``_outcome`` builds, without its copies).
        return {
            "id": m.id,
            "status": "sent",
            "reason": m.reason,
            "recipient": row["recipient"],
            "subject": row["subject"],
            "body": row["body"],
            "html": row["html"],
            "title": row["title"],
            "link": row["link"],
            "provider_id": result.provider_id,
            "sent_us": now_us,
            "attempts": attempts,
            "next_attempt_us": None,
        }
    content = {k: row[k] for k in ("recipient", "subject", "body", "html", "title", "link")}
    error = f"{result.code}: {result.error}" if result.code else str(result.error)
    if result.status == "retry":
        wait_s = context.backoff.delay(attempts, context.random, result.retry_after_s)
        if wait_s is None:
            report.failed += 1
            return _outcome(
                m, "failed", f"gave up after {attempts} attempts: {error}", attempts=attempts, **content
            )
        report.retry += 1
        next_us = now_us + round(wait_s * US_PER_SECOND)
        return _outcome(
            m,
            "queued",
            f"attempt {attempts} failed ({error}); next attempt at {_iso(next_us)}",
            attempts=attempts,
            next_attempt_us=next_us,
            **content,
        )
    report.failed += 1
    if result.suppress:
        suppressions.append(
            {
                "channel": m.channel,
                "address": row["recipient"],
                "reason": error,
                "code": result.code,
                "message_id": m.id,
                "created_us": now_us,
            }
        )
    return _outcome(m, "failed", error, attempts=attempts, **content)


def _iso(instant_us: int) -> str:
    return datetime.fromtimestamp(instant_us / US_PER_SECOND, UTC).isoformat().replace("+00:00", "Z")
