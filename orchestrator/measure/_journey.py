"""The lift report of a journey (``journey_report``), built from the store alone.

The unit is an entry (a journey instance). Its arm was fixed when the customer first entered; it converted
when the journey's goal event happened (or its goal condition held at a tick) within the goal window,
recorded the same way for both arms. The window starts at entry, or with ``from: first_send`` at the
instant the entry passed its first send step (a held-out entry passes it at the tick a treated one queues
its message). Only entries whose goal window has closed by the report instant are counted: an entry still
inside its window has not had its full chance to convert, and counting it would bias rates towards zero.
With a window from the first send, entries that left before any send have no window and are not counted
in either arm (they are told apart as ``left_before_first_send``): until the first send both arms walk
the same steps, so leaving them out selects alike in both.

Arms: ``treatment`` and ``holdout`` (the journey's own holdout) are compared; entries of customers in the
global holdout (``layer = 'global'`` in ``holdout_assignments``) are shown apart and left out of the
comparison, because the global layer is not part of the journey's declared split.

Send steps that choose per customer record which policy each entry got there: ``at: best_time`` gives
``best_time`` or ``immediate`` (the declared comparison share, by a hash of its own), ``channel:
best(...)`` gives ``best_channel`` or ``fixed:<first listed channel>``. The report adds a **send policy**
comparison per such step: conversions of the treated entries counted, by policy, with the same rate
statistics, the comparison share's policy as the control and the declared share as the expected split.

Everything is computed by ``analysis.analyze`` over the per-entry columns of ``entry_rows.EntryRows``, and
``entry_rows.export_entries`` writes those same columns, so an analyst can reproduce every number from the
export.

With ``uplift``, the report adds the uplift view (``_uplift``, a model estimate) of the compared entries:
the outcome is conversion, treated is the treatment arm, control the journey's holdout, and the features
are customer attributes as the store holds them (every attribute beyond the standard contact, time zone
and consent columns, or the ones named). A journey with too few entries gets a one-line note instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np

from orchestrator.clock import from_us
from orchestrator.durations import US_PER_SECOND, format_duration
from orchestrator.holdout import HOLDOUT, TREATMENT
from orchestrator.language import Journey, SpecError, load_journey_text
from orchestrator.measure._analysis import LiftAnalysis, MetricComparison, analyze
from orchestrator.measure._entry_rows import (
    GLOBAL_HOLDOUT,
    EntryRows,
    entry_attributes,
    load_entries,
    stored_attribute_names,
)
from orchestrator.measure._experiment import InputError
from orchestrator.measure._funnel import JourneyFunnel, journey_funnels
from orchestrator.measure._guardrails import Guardrail, journey_guardrails
from orchestrator.measure._messages import MessageStats, message_stats
from orchestrator.measure._rates import ArmSummary, summarize_arm
from orchestrator.measure._sequential import DEFAULT_SEQUENTIAL_TAU
from orchestrator.measure._splits import SplitView, split_views
from orchestrator.measure._timeline import TimelinePoint, cumulative_lift
from orchestrator.measure._uplift import DEFAULT_LEARNER, UpliftView, uplift_estimate
from orchestrator.store import (
    JourneyChoices,
    Store,
    journey_ids,
    journey_send_choices,
    latest_version_source,
    max_tick_us,
)

CONVERSION, REVENUE = "conversion", "revenue"
"""Metric names of the journey report."""
BEST_TIME, IMMEDIATE, BEST_CHANNEL = "best_time", "immediate", "best_channel"
"""The policies of choosing sends: the chosen hour or at once (the comparison share), the chosen channel
(its comparison share is ``fixed:<channel>``)."""
DEFAULT_PRE_PERIOD = timedelta(days=28)
"""How far before entry the pre-entry covariates (goal events and their revenue) look."""


@dataclass(frozen=True)
class JourneyLift:
    """Per-arm totals (``arms``: treatment and holdout, in journey units) and the full analysis."""

    arms: tuple[ArmSummary, ...]
    analysis: LiftAnalysis
    global_holdout: ArmSummary | None

    def comparison(self, metric: str = CONVERSION) -> MetricComparison | None:
        """The treatment-against-holdout comparison on ``metric`` (None when an arm is missing)."""
        result = self.analysis.metric(metric)
        return next(iter(result.comparisons), None)

    def to_dict(self) -> dict[str, Any]:
        out = self.analysis.to_dict()
        out["arms"] = [arm.to_dict() for arm in self.arms]
        out["global_holdout"] = None if self.global_holdout is None else self.global_holdout.to_dict()
        return out


@dataclass(frozen=True)
class SendPolicyLift:
    """At one send step that chooses per customer: the treated entries counted, compared by the policy they
    got there (``best_time`` against ``immediate``, ``best_channel`` against ``fixed:<channel>``)."""

    step: str
    choice: str  # "time" | "channel"
    control: str  # the comparison share's policy: immediate | fixed:<channel>
    compare_percent: float
    analysis: LiftAnalysis

    def comparison(self) -> MetricComparison | None:
        """The chosen policy against the comparison share, on conversion (None when a policy is missing)."""
        return next(iter(self.analysis.metric(CONVERSION).comparisons), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "choice": self.choice,
            "control": self.control,
            "compare_percent": self.compare_percent,
            **self.analysis.to_dict(),
        }


@dataclass(frozen=True)
class JourneyReport:
    journey_id: str
    version: int
    as_of_us: int
    goal_event: str | None
    goal_window: timedelta | None
    revenue_property: str | None
    entries: int
    matured: int
    lift: JourneyLift | None
    goal_condition: str | None = None  # a condition goal's condition (``goal_event`` is None then)
    goal_from: str = "entry"  # where the goal window starts: entry | first_send
    left_before_first_send: int = 0  # window from the first send: entries that left without one
    rows: EntryRows | None = None
    timeline: tuple[TimelinePoint, ...] = ()
    declared_holdout: float | None = None
    pre_period: timedelta = DEFAULT_PRE_PERIOD
    cuped: bool = False
    warnings: tuple[str, ...] = field(default_factory=tuple)
    funnels: tuple[JourneyFunnel, ...] = ()  # the per-step funnel of every version that ran, oldest first
    send_policies: tuple[SendPolicyLift, ...] = ()  # per choosing send step: conversions by policy
    uplift: UpliftView | None = None  # the uplift view, when asked for
    currency: str | None = None  # ISO 4217: the currency money is written in (None: plain numbers)
    splits: tuple[SplitView, ...] = ()  # per split step: each arm against its holdout slice and the A/B
    messages: tuple[MessageStats, ...] = ()  # per send step: the ledger, opens, clicks, opt-outs, conversions
    guardrails: tuple[Guardrail, ...] = ()  # opt-outs, complaints and bounces per arm (``_guardrails``)

    @property
    def has_goal(self) -> bool:
        return self.goal_event is not None or self.goal_condition is not None

    @property
    def goal_words(self) -> str:
        """The goal in words: ``purchase within 14d of entry``, ``core_actions_done >= 3 within 7d of the
        first send``."""
        anchor = "the first send" if self.goal_from == "first_send" else "entry"
        within = format_duration(self.goal_window) if self.goal_window else "?"
        return f"{self.goal_event or self.goal_condition} within {within} of {anchor}"

    @property
    def left_out_words(self) -> str:
        """The entries not counted, in words (those still inside their window or before it; with a window
        from the first send, those that left before any send)."""
        waiting = self.entries - self.matured - self.left_before_first_send
        if self.goal_from != "first_send":
            return f"{waiting} still inside it are left out"
        return (
            f"left out: {waiting} still inside it or not yet sent to, {self.left_before_first_send} that "
            "left before any send and so had no goal window"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "journey": self.journey_id,
            "version": self.version,
            "as_of": from_us(self.as_of_us).isoformat(),
            "goal": None
            if not self.has_goal
            else {
                "event": self.goal_event,
                "condition": self.goal_condition,
                "within": format_duration(self.goal_window) if self.goal_window else None,
                "from": self.goal_from,
                "revenue": self.revenue_property,
                "words": self.goal_words,
            },
            "currency": self.currency,
            "declared_holdout_percent": self.declared_holdout,
            "entries": self.entries,
            "matured_entries": self.matured,
            "still_in_window": self.entries - self.matured - self.left_before_first_send,
            "left_before_first_send": self.left_before_first_send,
            "unit": "entry (journey instance); arm fixed at the customer's first entry",
            "cuped": {
                "enabled": self.cuped,
                "covariates": {
                    CONVERSION: f"{self.goal_event} events in the {format_duration(self.pre_period)} "
                    "before entry",
                    REVENUE: f"{self.revenue_property} of those events",
                },
            }
            if self.goal_event is not None
            else None,
            "warnings": list(self.warnings),
            "lift": None if self.lift is None else self.lift.to_dict(),
            "timeline": [point.to_dict() for point in self.timeline],
            "funnel": [funnel.to_dict() for funnel in self.funnels],
            "send_policy": [policy.to_dict() for policy in self.send_policies],
            **({} if self.uplift is None else {"uplift": self.uplift.to_dict()}),
            "splits": [split.to_dict() for split in self.splits],
            "messages": [stats.to_dict() for stats in self.messages],
            "guardrails": [guardrail.to_dict() for guardrail in self.guardrails],
        }

    @property
    def guardrail_alarms(self) -> tuple[str, ...]:
        """The guardrails that alarm, each as a short name (``unsubscribed``, ``bounced per message``)."""
        return tuple(label for guardrail in self.guardrails for label in guardrail.labels)


def journey_report(
    store: Store,
    journey_id: str,
    as_of_us: int | None = None,
    alpha: float = 0.05,
    *,
    power: float = 0.8,
    sequential_tau: float = DEFAULT_SEQUENTIAL_TAU,
    cuped: bool = False,
    pre_period: timedelta = DEFAULT_PRE_PERIOD,
    segment_attribute: str | None = None,
    uplift: bool = False,
    uplift_features: Sequence[str] | None = None,
    uplift_learner: str = DEFAULT_LEARNER,
    bayes: bool = False,
    currency: str | None = None,
) -> JourneyReport:
    """Build the report of ``journey_id`` as of ``as_of_us`` (default: the last tick's instant); with
    ``uplift``, its uplift view on ``uplift_features`` (default: every stored attribute, see the module
    docstring) fitted by ``uplift_learner``.

    Raises ``KeyError`` with a readable message when the journey never ran in this store.
    """
    with store.connect() as conn:
        latest = latest_version_source(conn, journey_id)
        if latest is None:
            known = journey_ids(conn)
            raise KeyError(
                f"journey {journey_id!r} has not run in this store (known: {', '.join(known) or 'none'})"
            )
        if as_of_us is None:
            last = max_tick_us(conn)
            as_of_us = last if last is not None else 0
        try:
            journey = load_journey_text(latest.source, f"<stored {journey_id} v{latest.version}>").journey
        except SpecError:
            journey = None
        goal = None if journey is None else journey.goal
        window_us = round(goal.within.total_seconds() * US_PER_SECOND) if goal else 0
        rows = load_entries(
            conn,
            journey_id,
            as_of_us,
            window_us,
            goal.event if goal else None,
            goal.revenue if goal else None,
            round(pre_period.total_seconds() * US_PER_SECOND),
            segment_attribute,
            from_first_send=goal is not None and goal.start == "first_send",
        )
        funnels = tuple(journey_funnels(conn, journey_id))
        messages = message_stats(conn, journey_id, journey, rows, as_of_us, goal.within if goal else None)
        choices = journey_send_choices(conn, journey_id)
        guardrails = (
            ()
            if goal is None
            else journey_guardrails(
                conn, journey_id, rows, window_us, from_first_send=goal.start == "first_send", alpha=alpha
            )
        )
        features: dict[str, np.ndarray] = {}
        if uplift and goal is not None:
            names = list(uplift_features) if uplift_features else stored_attribute_names(conn)
            features = entry_attributes(conn, rows.customer_key, names)
    declared = None if journey is None else float(journey.holdout)
    base: dict[str, Any] = {
        "journey_id": journey_id,
        "version": latest.version,
        "as_of_us": as_of_us,
        "entries": len(rows),
        "rows": rows,
        "declared_holdout": declared,
        "pre_period": pre_period,
        "cuped": cuped,
        "funnels": funnels,
        "currency": currency,
        "messages": messages,
    }
    if goal is None:
        return JourneyReport(
            goal_event=None, goal_window=None, revenue_property=None, matured=0, lift=None, **base
        )
    counted = rows.select(rows.counted)
    # CUPED's covariates are the goal's events before entry: a condition goal has none.
    warnings = _warnings(counted)
    if cuped and goal.event is None:
        cuped = False
        warnings.append("CUPED is left off: a condition goal has no goal events before entry to adjust by")
    lift = _journey_lift(counted, declared, goal.revenue, alpha, power, sequential_tau, cuped, bayes)
    compared = counted.arm != GLOBAL_HOLDOUT
    uplift_view = None
    if uplift:
        chosen = np.flatnonzero(rows.counted)[compared]
        uplift_view = _journey_uplift(
            counted.select(compared),
            {name: values[chosen] for name, values in features.items()},
            uplift_learner,
        )
    timeline = cumulative_lift(
        counted.entered_us[compared],
        counted.arm[compared],
        counted.converted[compared],
        alpha=alpha,
        sequential_tau=sequential_tau,
    )
    policies = _send_policies(counted, choices, journey, alpha, power, sequential_tau)
    splits = split_views(
        journey_id,
        journey,
        counted,
        funnels,
        declared,
        goal.revenue,
        alpha=alpha,
        power=power,
        sequential_tau=sequential_tau,
        entries_per_day=entries_per_day(counted.entered_us[compared]),
        bayes=bayes,
    )
    return JourneyReport(
        splits=splits,
        send_policies=policies,
        goal_event=goal.event,
        goal_window=goal.within,
        revenue_property=goal.revenue,
        matured=len(counted),
        lift=lift,
        timeline=timeline,
        warnings=tuple(warnings),
        goal_condition=goal.signal,
        goal_from=goal.start,
        left_before_first_send=int(rows.no_window.sum()),
        uplift=uplift_view,
        guardrails=guardrails,
        **{**base, "cuped": cuped},
    )


def _journey_uplift(compared: EntryRows, features: dict[str, np.ndarray], learner: str) -> UpliftView:
    """The uplift view of the compared entries, or a one-line note saying why there is none."""
    if not features:
        return UpliftView(
            notes=("no uplift view: no customer attribute is stored, so there is nothing to model on",)
        )
    try:
        result = uplift_estimate(
            features,
            compared.converted,
            compared.arm == TREATMENT,
            metric=CONVERSION,
            treatment=TREATMENT,
            control=HOLDOUT,
            learner=learner,
            groups=compared.customer_key,  # a customer's re-entries stay in one fold
        )
    except InputError as exc:
        return UpliftView(notes=(f"no uplift view: {exc}",))
    return UpliftView(results=(result,))


def _journey_lift(
    counted: EntryRows,
    declared: float | None,
    revenue_property: str | None,
    alpha: float,
    power: float,
    sequential_tau: float,
    cuped: bool,
    bayes: bool = False,
) -> JourneyLift | None:
    if not len(counted):
        return None
    compared = counted.select(counted.arm != GLOBAL_HOLDOUT)
    arms = tuple(
        summarize_arm(name, compared.converted[compared.arm == name], compared.revenue[compared.arm == name])
        for name in (TREATMENT, HOLDOUT)
    )
    global_mask = counted.arm == GLOBAL_HOLDOUT
    global_arm = (
        summarize_arm(GLOBAL_HOLDOUT, counted.converted[global_mask], counted.revenue[global_mask])
        if global_mask.any()
        else None
    )
    metrics = {CONVERSION: compared.converted.astype(np.float64)}
    kinds = {CONVERSION: "rate"}
    covariates = {CONVERSION: ("pre_conversions", compared.pre_conversions)}
    if revenue_property:
        metrics[REVENUE] = compared.revenue
        kinds[REVENUE] = "mean"
        covariates[REVENUE] = ("pre_revenue", compared.pre_revenue)
    shares, split = _declared_split(compared, declared)
    analysis = analyze(
        compared.arm,
        HOLDOUT,
        metrics,
        kinds=kinds,
        expected_shares=shares,
        split_declared=split,
        covariates=covariates if cuped else None,
        segments=None
        if compared.segment is None or compared.segment_column is None
        else (compared.segment_column, compared.segment),
        alpha=alpha,
        power=power,
        sequential_tau=sequential_tau,
        entries_per_day=entries_per_day(compared.entered_us),
        bayes=bayes,
    )
    return JourneyLift(arms=arms, analysis=analysis, global_holdout=global_arm)


def entries_per_day(entered_us: np.ndarray) -> float | None:
    """Counted entries per day, from the first to the last entry counted (at least a day); None without
    any: how fast a journey gathers the entries its call still needs."""
    if not len(entered_us):
        return None
    span_days = max((int(entered_us.max()) - int(entered_us.min())) / (86_400 * US_PER_SECOND), 1.0)
    return len(entered_us) / span_days


def _declared_split(compared: EntryRows, declared: float | None) -> tuple[dict[str, float] | None, str]:
    """Expected arm weights: each customer adds the holdout share in force when they were assigned.

    With an unchanged percent this is the plain declared split; after a ramp each period weighs in with its
    own percent, so a ramp does not look like a sample-ratio mismatch. Entries without an assignment row use
    the journey's declared percent.
    """
    if declared is None and np.isnan(compared.holdout_percent).all():
        return None, ""
    fallback = declared if declared is not None else float(np.nanmean(compared.holdout_percent))
    percent = np.where(np.isnan(compared.holdout_percent), fallback, compared.holdout_percent) / 100.0
    distinct = sorted({float(p) for p in np.unique(percent * 100.0)})
    if len(distinct) <= 1:
        value = distinct[0] if distinct else fallback
        split = f"holdout {value:g}% of entrants (journey layer)"
    else:
        split = (
            f"holdout percent changed over time ({', '.join(f'{p:g}%' for p in distinct)}): expected counts "
            "use the percent in force at each assignment"
        )
    return {TREATMENT: float((1.0 - percent).sum()), HOLDOUT: float(percent.sum())}, split


def _warnings(counted: EntryRows) -> list[str]:
    out = []
    compared = counted.arm != GLOBAL_HOLDOUT
    customers = np.unique(counted.customer_key[compared]).size
    if customers < int(compared.sum()):
        out.append(
            f"{int(compared.sum()) - customers} entries are re-entries of the same customers: entries of one "
            "customer are correlated, so intervals treat more information as independent than there is"
        )
    percents = np.unique(counted.holdout_percent[compared & ~np.isnan(counted.holdout_percent)])
    if percents.size > 1:
        out.append(
            "the holdout percent changed while entries were counted; if conversion rates also drifted over "
            "time, the pooled comparison can be biased (compare the timeline)"
        )
    return out


def _send_policies(
    counted: EntryRows,
    choices: JourneyChoices,
    journey: Journey | None,
    alpha: float,
    power: float,
    sequential_tau: float,
) -> tuple[SendPolicyLift, ...]:
    """Per send step with recorded choices: the treated entries counted, compared by policy."""
    if not len(choices) or not len(counted):
        return ()
    sends = {} if journey is None else dict(zip(journey.step_ids(), journey.steps, strict=True))
    treated = counted.arm == TREATMENT
    out = []
    for step in sorted({str(s) for s in choices.step}):
        at_step = choices.step == step
        ids, policy = choices.instance_id[at_step], choices.policy[at_step]
        order = np.argsort(ids)
        ids, policy = ids[order], policy[order]
        pos = np.minimum(np.searchsorted(ids, counted.instance_id), len(ids) - 1)
        chosen = treated & (ids[pos] == counted.instance_id)
        if not chosen.any():
            continue
        labels = policy[pos[chosen]]
        found = sends.get(step)
        send = None if found is None else found.send
        kind = "channel" if send is not None and send.best_of else "time"
        if kind == "channel":
            assert send is not None
            chosen_label, control = BEST_CHANNEL, f"fixed:{send.channels[0]}"
            percent: float | None = send.best_channel_options.compare
        else:
            chosen_label, control = BEST_TIME, IMMEDIATE
            percent = send.best_time_options.compare if send is not None and send.at is not None else None
        shares = None if percent is None else {chosen_label: 100.0 - percent, control: percent}
        share = "at once" if kind == "time" else control
        analysis = analyze(
            labels,
            control,
            {CONVERSION: counted.converted[chosen].astype(np.float64)},
            kinds={CONVERSION: "rate"},
            expected_shares=None if shares is None else {k: v for k, v in shares.items() if v > 0},
            split_declared="" if percent is None else f"compare: {percent:g}% sent {share}",
            alpha=alpha,
            power=power,
            sequential_tau=sequential_tau,
        )
        out.append(SendPolicyLift(step, kind, control, float(percent or 0.0), analysis))
    return tuple(out)
