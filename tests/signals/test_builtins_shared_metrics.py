"""The workspace's shared metrics file: loading, mistakes as file:line:column, the journey-side checks,
and shared tiers and scores evaluated through the Evaluator as a journey reads them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orchestrator.language import SpecError, load_journey_text
from orchestrator.language._shared_metrics import (
    journey_problems,
    load_shared_metrics,
    load_shared_metrics_text,
    merged_metrics,
    shared_metrics_file,
)
from orchestrator.signals import _lang as lang
from orchestrator.signals._evaluate import Evaluator
from orchestrator.signals._frame import CustomerFrame, EventFrame, column_from_values

S = 1_000_000
DAY = 86400 * S
NOW = 1_700_000_000 * S

SHARED = """\
# Declared once for every journey.
metrics:
  quiet_days: 30
  days_quiet: recency(session_start, purchase)
  tier: lifecycle_tier(days_quiet, frequency(session_start, purchase, within=30d))
  r: quintile(-recency(purchase))
  f: quintile(frequency(purchase, within=365d))
  rfm: rfm_segment(r, f)
  vip_value: clv(purchase.amount) * vip_factor
"""

JOURNEY = """\
id: winback
version: 1
metrics:
  quiet: not days_quiet <= quiet_days
signal: quiet and tier in ["at_risk", "lapsed"]
holdout: 10
steps:
  - wait: 1d
"""


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_shared_metrics_text(text, "metrics.yaml")
    return [str(p) for p in info.value.problems]


def test_loads_expressions_and_numbers() -> None:
    shared = load_shared_metrics_text(SHARED, "journeys/metrics.yaml")
    assert list(shared.metrics) == ["quiet_days", "days_quiet", "tier", "r", "f", "rfm", "vip_value"]
    assert shared.metrics["quiet_days"] == lang.parse("30")
    assert shared.metrics["tier"] == lang.parse(
        "lifecycle_tier(days_quiet, frequency(session_start, purchase, within=30d))"
    )
    assert shared.where("tier") == "journeys/metrics.yaml:5:3"
    assert shared.attributes_read() == {"vip_factor": "vip_value"}


def test_loads_from_a_journeys_folder(tmp_path: Path) -> None:
    assert shared_metrics_file(tmp_path) is None
    (tmp_path / "metrics.yml").write_text(SHARED)
    path = shared_metrics_file(tmp_path)
    assert path == tmp_path / "metrics.yml"
    assert "rfm" in load_shared_metrics(path).metrics
    with pytest.raises(SpecError, match="cannot read the file"):
        load_shared_metrics(tmp_path / "missing.yaml")


def test_expression_mistakes_point_inside_the_expression() -> None:
    text = "metrics:\n  a: count(purchase) +\n  b: 'weighted(x=0.5, y=0.4)'\n  c: quintile(x, y)\n"
    assert problems(text) == [
        # "count(purchase) +" starts at column 6; the end of the text is 17 characters in.
        "metrics.yaml:2:23: the expression ends too early",
        # a quoted scalar: the expression starts one column after the quote, weights at offset 9
        "metrics.yaml:3:16: the weights of weighted() add up to 0.9, not 1: x=0.5 + y=0.4",
        "metrics.yaml:4:6: quintile() takes 1 argument(s), got 2",
    ]


def test_file_shape_mistakes() -> None:
    assert problems("metric:\n  a: 1\n") == [
        "metrics.yaml:1:1: unknown key 'metric'; did you mean 'metrics'?",
        "metrics.yaml:1:1: missing required key 'metrics'",
    ]
    assert problems("metrics: [a, b]\n") == [
        "metrics.yaml:1:10: metrics: expected a mapping of names to expressions"
    ]
    assert problems("- a\n") == ["metrics.yaml:1:1: a shared metrics file is a mapping with one key, metrics"]
    got = problems("metrics:\n  2fast: 1\n  and: 2\n  ok: [1]\n  flag: true\n")
    rule = "cannot be a metric name: use letters, digits and _, starting with a letter"
    assert got == [
        f"metrics.yaml:2:3: '2fast' {rule}",
        f"metrics.yaml:3:3: 'and' {rule}",
        "metrics.yaml:4:7: metrics.ok: expected an expression (text) or a number, got [1]",
        "metrics.yaml:5:9: metrics.flag: expected an expression (text) or a number, got True",
    ]


def test_metrics_in_a_loop() -> None:
    got = problems("metrics:\n  a: b + 1\n  b: c * 2\n  c: a\n  d: c\n")
    assert got == ["metrics.yaml:2:6: metrics refer to each other in a loop: a -> b -> c -> a"]


def test_a_journey_cannot_redefine_a_shared_metric_or_an_attribute_it_reads() -> None:
    shared = load_shared_metrics_text(SHARED, "journeys/metrics.yaml")
    loaded = load_journey_text(JOURNEY, "journeys/winback.yaml")
    assert journey_problems(shared, loaded) == []
    clash = JOURNEY.replace("  quiet: ", "  tier: days_quiet\n  vip_factor: '2'\n  quiet: ")
    got = [str(p) for p in journey_problems(shared, load_journey_text(clash, "journeys/winback.yaml"))]
    assert got == [
        "journeys/winback.yaml:4:3: metric 'tier' is already a shared metric (journeys/metrics.yaml:5:3); "
        "use that one, or give this metric another name",
        "journeys/winback.yaml:5:3: metric 'vip_factor' would change the shared metric 'vip_value' "
        "(journeys/metrics.yaml:9:3), which reads vip_factor as a customer attribute; give this metric "
        "another name",
    ]
    with pytest.raises(ValueError, match=r"clash with the shared metrics of journeys/metrics\.yaml: tier"):
        merged_metrics(shared, {"tier": lang.parse("1")})


def test_shared_tiers_and_scores_are_read_like_the_journeys_own_metrics() -> None:
    shared = load_shared_metrics_text(SHARED, "journeys/metrics.yaml")
    journey = load_journey_text(JOURNEY, "journeys/winback.yaml").journey
    own = {name: lang.parse(text) for name, text in journey.metrics.items()}
    metrics = merged_metrics(shared, own)
    assert merged_metrics(None, own) == own

    # Customer 1: 10 sessions lately; 2: one purchase 40 days ago; 3: one purchase 100 days ago and two
    # in the year; 4: nothing at all.
    rows = [(1, "session_start", d * DAY, None) for d in range(1, 11)]
    rows += [
        (2, "purchase", 40 * DAY, 20.0),
        (3, "purchase", 100 * DAY, 5.0),
        (3, "purchase", 300 * DAY, 5.0),
    ]
    types = ["session_start", "purchase"]
    events = EventFrame(
        customer=np.array([r[0] for r in rows]),
        ts=np.array([NOW - r[2] for r in rows]),
        type=np.array([types.index(r[1]) for r in rows], dtype=np.int32),
        type_names=types,
        n_customers=5,
        properties={"amount": column_from_values([r[3] for r in rows])},
    )
    people = CustomerFrame(
        5,
        np.array([False, True, True, True, True]),
        {"vip_factor": column_from_values([None, 1, 2, 3, None])},
    )
    ev = Evaluator(events, people, NOW, metrics)
    assert ev.values(lang.parse("tier"))[1:].tolist() == ["highly_active", "at_risk", "lapsed", "lapsed"]
    # -recency of purchase: -, -40, -100, - -> over two buyers, r = 1 + floor(5 * s / 2): -, 3, 1, -
    # frequency 0, 1, 2, 0 over all four customers -> f = 1 + floor(5 * s / 4): 1, 3, 4, 1
    assert ev.values(lang.parse("r"))[2:4].tolist() == [3, 1]
    assert ev.values(lang.parse("f"))[1:].tolist() == [1, 3, 4, 1]
    assert ev.values(lang.parse("rfm"))[1:].tolist() == [None, "need_attention", "at_risk", None]
    assert ev.values(lang.parse("vip_value"))[1:].tolist()[:3] == [0.0, 40.0, 30.0]
    signal = load_journey_text(JOURNEY, "journeys/winback.yaml").journey.signal
    assert signal is not None
    assert ev.condition(lang.parse(signal))[1:].tolist() == [False, True, True, True]
