"""Per split arm of a journey's ``split`` steps: each arm against its holdout slice, and the arms against
each other within the treated arm (content A/B), from the store alone (``split_views``).

A split step sends an instance down one arm by ``holdout.split_arms``: a hash of the journey, the step, the
customer id and the entry instant against the arms' cumulative percents. The hash is deterministic, so
the report recomputes the arm of **every counted entry**, treated or held out, whether or not it reached
the split: an intention-to-treat assignment. Entries that never reach the split (they left or converted
before it) dilute every arm alike, and the comparison stays randomised: the split's salt is independent
of the holdout's, so each arm's holdout slice is a random share of the holdout like the arm's treated
entries are of the treated arm. The engine routes with the same function, so the report's arms are the
arms the engine sent entries down.

Per arm: the counted entries assigned to it in each arm (treated and held out), how many instances the
engine sent down it (the funnel's ``split-<n>`` counts: every entry, counted or not, every version; its
holdout arm includes the global holdout), the conversion rate (and revenue per entry) of its treated
entries and of its holdout slice, and the lift of the one over the other (``analyze``, with its call).
Then **the A/B**: within the treated arm, each arm against the first one listed, on the same statistics
(the lift, its intervals, the p-value, the call and the small-sample warnings), with a split check of the
arm sizes against the declared percents.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.holdout import HOLDOUT, TREATMENT, split_arms
from orchestrator.language import Journey
from orchestrator.measure._analysis import LiftAnalysis, MetricComparison, analyze
from orchestrator.measure._entry_rows import GLOBAL_HOLDOUT, EntryRows
from orchestrator.measure._funnel import JourneyFunnel
from orchestrator.measure._rates import ArmSummary, summarize_arm

CONVERSION, REVENUE = "conversion", "revenue"
_IS_KNOWN = np.frompyfunc(lambda v: v is not None, 1, 1)


@dataclass(frozen=True)
class SplitArmView:
    """One arm of a split step: ``target`` (a step id, ``next`` or ``exit``), its percent and, when it
    leads to a send step, that step and its template (what the A/B compares). ``assigned`` is the counted
    entries the hash puts in the arm (treated, held out); ``reached`` the instances the engine sent down it
    (treated, held out; None when the funnel has no counts of the step). ``treated`` and ``holdout`` are
    the conversion totals of the two slices, ``against_holdout`` the one compared with the other."""

    index: int
    target: str
    percent: float
    send_step: str | None
    template: str | None
    treated: ArmSummary
    holdout: ArmSummary
    reached: tuple[int, int] | None
    against_holdout: LiftAnalysis | None

    def comparison(self, metric: str = CONVERSION) -> MetricComparison | None:
        """The arm's treated entries against its holdout slice on ``metric`` (None when a slice is empty)."""
        if self.against_holdout is None:
            return None
        return next(iter(self.against_holdout.metric(metric).comparisons), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "arm": self.index + 1,
            "target": self.target,
            "percent": self.percent,
            "send_step": self.send_step,
            "template": self.template,
            "assigned": {TREATMENT: self.treated.n, HOLDOUT: self.holdout.n},
            "reached": None
            if self.reached is None
            else {TREATMENT: self.reached[0], HOLDOUT: self.reached[1], "all_entries": True},
            TREATMENT: self.treated.to_dict(),
            HOLDOUT: self.holdout.to_dict(),
            "against_holdout": None if self.against_holdout is None else self.against_holdout.to_dict(),
        }


@dataclass(frozen=True)
class SplitView:
    """One split step: its arms, and ``ab``, each arm against the first within the treated arm (None
    without treated entries). ``instance_id`` / ``arm`` give every counted entry compared (global holdout
    left out) and the arm index the hash assigns it (-1 when its customer id is not known)."""

    step: str
    arms: tuple[SplitArmView, ...]
    ab: LiftAnalysis | None
    instance_id: np.ndarray
    arm: np.ndarray
    notes: tuple[str, ...] = ()

    @property
    def control(self) -> str:
        return self.arms[0].target

    def ab_comparison(self, target: str, metric: str = CONVERSION) -> MetricComparison | None:
        """Arm ``target`` against the first arm within the treated arm (None when missing)."""
        if self.ab is None:
            return None
        return next((c for c in self.ab.metric(metric).comparisons if c.arm == target), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "assignment": "intention to treat: every counted entry's arm recomputed from the split's hash "
            "(customer id and entry instant), in both arms, whether or not it reached the split",
            "control": self.control,
            "arms": [arm.to_dict() for arm in self.arms],
            "ab": None if self.ab is None else {"within": TREATMENT, **self.ab.to_dict()},
            "notes": list(self.notes),
        }


def split_views(
    journey_id: str,
    journey: Journey | None,
    counted: EntryRows,
    funnels: Sequence[JourneyFunnel],
    declared_holdout: float | None,
    revenue_property: str | None,
    *,
    alpha: float,
    power: float,
    sequential_tau: float,
    entries_per_day: float | None,
    bayes: bool = False,
) -> tuple[SplitView, ...]:
    """The view of every split step of the journey's latest version (see the module docstring), over the
    counted entries ``counted`` (the global holdout is left out, as in the main comparison)."""
    if journey is None:
        return ()
    ids = journey.step_ids()
    steps = dict(zip(ids, journey.steps, strict=True))
    compared = counted.select(counted.arm != GLOBAL_HOLDOUT)
    known = _IS_KNOWN(compared.customer_id).astype(bool)
    options: dict[str, Any] = {
        "alpha": alpha,
        "power": power,
        "sequential_tau": sequential_tau,
        "entries_per_day": entries_per_day,
        "bayes": bayes,
    }
    out = []
    for position, step_id in enumerate(ids):
        split = steps[step_id].split
        if split is None:
            continue
        targets, percents = list(split), [float(p) for p in split.values()]
        arm = np.full(len(compared), -1, np.int64)
        if known.any():
            arm[known] = split_arms(
                journey_id, step_id, compared.customer_id[known], compared.entered_us[known], percents
            )
        notes = []
        if not known.all():
            notes.append(f"{int((~known).sum())} counted entries have no known customer id: left out")
        reached, note = _reached(funnels, step_id, len(targets))
        notes.extend(note)
        arms = []
        for index, (target, percent) in enumerate(zip(targets, percents, strict=True)):
            send_step = _send_step(ids, steps, position, target)
            send = None if send_step is None else steps[send_step].send
            rows = compared.select(arm == index)
            arms.append(
                SplitArmView(
                    index=index,
                    target=target,
                    percent=percent,
                    send_step=send_step,
                    template=None if send is None else send.template,
                    treated=_summary(rows, TREATMENT),
                    holdout=_summary(rows, HOLDOUT),
                    reached=None if reached is None else reached[index],
                    against_holdout=_against_holdout(rows, declared_holdout, revenue_property, options),
                )
            )
        treated = compared.select((compared.arm == TREATMENT) & (arm >= 0))
        treated_arm = arm[(compared.arm == TREATMENT) & (arm >= 0)]
        ab = None
        if len(treated):
            labels = np.array(targets, dtype=object)[treated_arm]
            ab = analyze(
                labels,
                targets[0],
                _metrics(treated, revenue_property),
                kinds=_kinds(revenue_property),
                expected_shares=dict(zip(targets, percents, strict=True)),
                split_declared=", ".join(f"{t} {p:g}%" for t, p in zip(targets, percents, strict=True)),
                **options,
            )
        out.append(SplitView(step_id, tuple(arms), ab, compared.instance_id, arm, tuple(notes)))
    return tuple(out)


def _send_step(ids: list[str], steps: dict[str, Any], position: int, target: str) -> str | None:
    """The send step an arm leads to at once (its target, or the step after the split for ``next``)."""
    if target == "exit":
        return None
    step_id = ids[position + 1] if target == "next" and position + 1 < len(ids) else target
    step = steps.get(step_id)
    return step_id if step is not None and step.send is not None else None


def _summary(rows: EntryRows, name: str) -> ArmSummary:
    mask = rows.arm == name
    return summarize_arm(name, rows.converted[mask], rows.revenue[mask])


def _metrics(rows: EntryRows, revenue_property: str | None) -> dict[str, np.ndarray]:
    metrics = {CONVERSION: rows.converted.astype(np.float64)}
    if revenue_property:
        metrics[REVENUE] = rows.revenue
    return metrics


def _kinds(revenue_property: str | None) -> dict[str, str]:
    return {CONVERSION: "rate", **({REVENUE: "mean"} if revenue_property else {})}


def _against_holdout(
    rows: EntryRows, declared: float | None, revenue_property: str | None, options: dict[str, Any]
) -> LiftAnalysis | None:
    """The arm's treated entries against its holdout slice (None without both)."""
    if not ((rows.arm == TREATMENT).any() and (rows.arm == HOLDOUT).any()):
        return None
    shares = None if declared is None else {TREATMENT: 100.0 - declared, HOLDOUT: declared}
    return analyze(
        rows.arm,
        HOLDOUT,
        _metrics(rows, revenue_property),
        kinds=_kinds(revenue_property),
        expected_shares=shares,
        split_declared="" if declared is None else f"holdout {declared:g}% of entrants (journey layer)",
        **options,
    )


def _reached(
    funnels: Sequence[JourneyFunnel], step_id: str, n_arms: int
) -> tuple[list[tuple[int, int]] | None, list[str]]:
    """Per arm, the instances the engine sent down it (treated, held out) over every version with the
    step, from the funnel's counts; None when no version counted any."""
    totals = [[0, 0] for _ in range(n_arms)]
    found = False
    notes = []
    for funnel in funnels:
        if step_id not in funnel.step_ids:
            continue
        for column, name in enumerate((TREATMENT, HOLDOUT)):
            step = next((s for s in funnel.arm(name).steps if s.step == step_id), None)
            if step is None:
                continue
            for split_arm in step.split:
                if split_arm.index < n_arms:
                    totals[split_arm.index][column] += split_arm.n
                    found = True
                elif split_arm.n:
                    notes.append(
                        f"version {funnel.version} of the split at {step_id} had more arms than the latest"
                    )
    return ([(t, h) for t, h in totals] if found else None), sorted(set(notes))
