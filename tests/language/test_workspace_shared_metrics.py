"""A workspace's shared metrics file (journeys/metrics.yaml): every journey below it reads its metrics,
a journey cannot redefine them, and editing the file changes the meaning (digest) of those journeys."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.engine._workspace import load_workspace, plan_from_source, validate_paths
from orchestrator.language import SpecError

SHARED = """metrics:
  days_since_active: recency(session_start)
  tier: lifecycle_tier(days_since_active, frequency(session_start, within=30d))
"""

JOURNEY = """id: lapsed_mail
version: 1
entry:
  segment: tier == "lapsed"
holdout: 10
steps:
  - send: {channel: email, subject: "Come back", template: hello.txt}
"""


def workspace(root: Path, shared: str = SHARED, journey: str = JOURNEY) -> Path:
    (root / "journeys").mkdir(parents=True, exist_ok=True)
    (root / "templates").mkdir(exist_ok=True)
    (root / "templates" / "hello.txt").write_text("Hello {{ metrics.days_since_active }}\n")
    (root / "journeys" / "metrics.yaml").write_text(shared)
    (root / "journeys" / "lapsed.yaml").write_text(journey)
    return root / "journeys"


def test_journeys_read_the_shared_metrics(tmp_path: Path) -> None:
    ws = load_workspace([workspace(tmp_path)])
    assert [p.id for p in ws.plans] == ["lapsed_mail"]  # metrics.yaml is not taken for a journey
    plan = ws.plans[0]
    assert {"days_since_active", "tier"} <= set(plan.metrics)
    assert ws.shared_sources["lapsed_mail"] == SHARED
    # An old version rebuilt from the store, with the shared text it was stored with, means the same.
    again = plan_from_source(ws.sources["lapsed_mail"], "stored", shared_metrics=SHARED)
    assert again.digest == plan.digest and set(again.metrics) == set(plan.metrics)


def test_editing_the_shared_file_changes_the_journeys_meaning(tmp_path: Path) -> None:
    before = load_workspace([workspace(tmp_path)]).plans[0].digest
    edited = SHARED.replace("within=30d", "within=60d")
    after = load_workspace([workspace(tmp_path, shared=edited)]).plans[0].digest
    assert before != after
    comments_only = "# tiers\n" + SHARED
    assert load_workspace([workspace(tmp_path, shared=comments_only)]).plans[0].digest == before


def test_a_journey_cannot_redefine_a_shared_metric(tmp_path: Path) -> None:
    clash = JOURNEY.replace("entry:", 'metrics:\n  tier: "1"\nentry:')
    path = workspace(tmp_path, journey=clash)
    with pytest.raises(SpecError) as err:
        load_workspace([path])
    message = str(err.value)
    assert "lapsed.yaml:4:" in message and "tier" in message
    _, problems = validate_paths([path])
    assert any(p.line == 4 for p in problems)


def test_a_mistake_in_the_shared_file_is_reported_where_it_is(tmp_path: Path) -> None:
    broken = SHARED.replace("recency(session_start)", "recency(session_start")
    with pytest.raises(SpecError) as err:
        load_workspace([workspace(tmp_path, shared=broken)])
    assert "metrics.yaml:2:" in str(err.value)
