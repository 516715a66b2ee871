"""Engagement analytics read from a real SQLite store of five customers, every figure worked out by hand
(docs/metrics.md, "Engagement analytics"), and the exported tables read back."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from analytics_story import FROM, TO, build

from orchestrator.errors import UsageError
from orchestrator.measure import Analytics, AnalyticsSettings, engagement_analytics, export_analytics
from orchestrator.store import Store, open_store, sqlite_url
from orchestrator.store._customers import upsert_customers


@pytest.fixture
def url(tmp_path: Path) -> str:
    return build(tmp_path / "shop.db")


def analytics_of(url: str, start: date | None = FROM, end: date | None = TO, **settings: Any) -> Analytics:
    store: Store = open_store(url, create=False)
    try:
        return engagement_analytics(store, start, end, AnalyticsSettings(**settings))
    finally:
        store.dispose()


def test_active_customers_by_hand(url: str) -> None:
    data = analytics_of(url).data
    assert data["window"] == {"from": "2024-03-04", "to": "2024-04-01", "days": 28}
    days = {d["date"]: d for d in data["active"]["days"]}
    assert len(days) == 28 and min(days) == "2024-03-04" and max(days) == "2024-03-31"
    dau = {k: v["dau"] for k, v in days.items() if v["dau"]}
    # ann on the 5th, dan on the 6th, bob on the 10th, dan on the 20th and 21st, ann from the 25th.
    assert dau == {
        "2024-03-05": 1,
        "2024-03-06": 1,
        "2024-03-10": 1,
        "2024-03-20": 1,
        "2024-03-21": 1,
        **{f"2024-03-{d}": 1 for d in range(25, 32)},
    }
    assert days["2024-03-10"]["wau"] == 3  # ann (5th), dan (6th), bob (10th)
    assert days["2024-03-11"]["wau"] == 3 and days["2024-03-12"]["wau"] == 2  # ann's 5th left on the 12th
    assert days["2024-03-04"]["mau"] == 1  # ann, 20 February, in [4 February, 4 March]
    assert days["2024-03-31"]["mau"] == 3  # ann, bob, dan in [2 March, 31 March]; cat and eve are quiet
    # Every day's 30-day window starts after the first activity (eve, November): all days count.
    assert data["active"]["full_month_days"] == 28
    ratios = [d["dau"] / d["mau"] for d in days.values()]
    assert data["active"]["stickiness"] == pytest.approx(sum(ratios) / 28)
    assert days["2024-03-31"]["stickiness"] == pytest.approx(1 / 3)


def test_cohorts_with_a_customer_seen_once_and_an_empty_week(url: str) -> None:
    retention = analytics_of(url).data["retention"]
    birth = {row["cohort"]: row for row in retention["birth"]}
    # First seen in the window: bob (seen once) and dan, both in the week of 4 March. ann, cat and eve
    # were first seen before it.
    assert [(c, r["customers"]) for c, r in birth.items()] == [
        ("2024-03-04", 2),
        ("2024-03-11", 0),
        ("2024-03-18", 0),
        ("2024-03-25", 0),
    ]
    # Four weeks of data: no 30-day window has ended, so nothing is measurable, shown as None, not 0.
    for row in retention["birth"] + retention["compounded"]:
        for mark in (30, 60, 90):
            assert row[f"d{mark}"] == {"retained": None, "rate": None, "measurable": False}
    compounded = {row["cohort"]: row["customers"] for row in retention["compounded"]}
    assert compounded == {"2024-03-04": 3, "2024-03-11": 0, "2024-03-18": 1, "2024-03-25": 1}


def test_cohorts_measured_once_their_windows_end(url: str) -> None:
    # Read to 1 June, the week of 4 March is measurable at 30 days (its Sunday's window [30, 60) ends
    # before 4 March + 6 + 60 = 9 May) and not at 60 (4 March + 6 + 90 = 8 June, after 1 June).
    retention = analytics_of(url, FROM, date(2024, 6, 1)).data["retention"]
    week = retention["birth"][0]
    assert week["cohort"] == "2024-03-04" and week["customers"] == 2
    # bob (seen once) and dan (last seen 21 March, 15 days after first) never came back 30 to 59 days on.
    assert week["d30"] == {"retained": 0, "rate": 0.0, "measurable": True}
    assert week["d60"]["measurable"] is False and week["d60"]["rate"] is None
    # Compounded, week of 18 March: dan, anchored on 20 March, never back: 0 of 1, measurable? 18 March
    # + 66 days = 23 May, before 1 June: yes.
    by_week = {row["cohort"]: row for row in retention["compounded"]}
    assert by_week["2024-03-18"]["d30"] == {"retained": 0, "rate": 0.0, "measurable": True}
    # Week of 25 March: ann, anchored on 25 March; 25 March + 66 = 30 May: measurable, and she was not back.
    assert by_week["2024-03-25"]["d30"]["rate"] == 0.0


def test_churn_conversion_and_surveys_per_week(url: str) -> None:
    periods = analytics_of(url).data["periods"]
    assert [p["period"] for p in periods] == ["2024-03-04", "2024-03-11", "2024-03-18", "2024-03-25"]
    assert [p["complete"] for p in periods] == [True] * 4
    assert [p["active"] for p in periods] == [3, 0, 1, 1]
    # The week before the window (26 February) had nobody, so the first week has no churn rate; the empty
    # week of 11 March lost all three; the week of 25 March lost dan.
    assert [p["previous_active"] for p in periods] == [0, 3, 0, 1]
    assert [p["churned"] for p in periods] == [0, 3, 0, 1]
    assert [p["churn_rate"] for p in periods] == [None, 1.0, None, 1.0]
    assert [p["converters"] for p in periods] == [1, 0, 1, 0]
    assert [p["conversion_rate"] for p in periods] == [pytest.approx(1 / 3), None, 1.0, 0.0]
    assert [p["nps"] for p in periods] == [100.0, None, None, None]
    assert [p["nps_responses"] for p in periods] == [1, 0, 0, 0]
    assert [p["csat"] for p in periods] == [None, None, None, 0.0]  # a 3 is not satisfied
    assert [p["ces"] for p in periods] == [None, None, None, 5.0]


def test_a_period_not_yet_over_has_no_churn(url: str) -> None:
    periods = analytics_of(url, FROM, date(2024, 3, 28), period="month").data["periods"]
    # March, read to the 28th: not over, so no churn yet; February (before the window) held ann.
    assert [(p["period"], p["complete"]) for p in periods] == [("2024-03-01", False)]
    assert periods[0]["previous_active"] == 1 and periods[0]["churned"] is None
    assert periods[0]["churn_rate"] is None
    assert periods[0]["active"] == 3  # ann, bob and dan (ann on several days counts once)


def test_a_quiet_window(url: str) -> None:
    data = analytics_of(url, date(2024, 6, 3), date(2024, 6, 10)).data
    (week,) = data["periods"]
    assert (week["active"], week["previous_active"], week["churn_rate"], week["conversion_rate"]) == (
        0,
        0,
        None,
        None,
    )
    assert [d["dau"] for d in data["active"]["days"]] == [0] * 7 and data["active"]["stickiness"] is None
    # At 3 June: ann (63 days quiet), bob (85) and dan (74) at_risk, cat and eve lapsed; by 10 June bob has
    # been quiet for 92 days: lapsed.
    tiers = data["tiers"]
    assert tiers["from_labels"] == tiers["to_labels"] == ["at_risk", "lapsed"]
    assert tiers["matrix"] == [[2, 1], [0, 2]]


def test_tier_transitions_by_hand(url: str) -> None:
    tiers = analytics_of(url).data["tiers"]
    assert tiers["customers"] == 5
    # At 4 March: ann last active 12.6 days before, once in 30 days: occasionally_active; cat 48.6 days:
    # at_risk; eve more than 90 days: lapsed; bob and dan not yet seen. At 1 April: ann active 0.5 days
    # before, 12 events in 30 days: highly_active; bob 22 days, once: occasionally_active; cat 77 days:
    # at_risk; dan 10.6 days, 4 events: regularly_engaged; eve lapsed.
    assert tiers["from_labels"] == ["occasionally_active", "at_risk", "lapsed", "(not yet seen)"]
    assert tiers["to_labels"] == [
        "highly_active",
        "regularly_engaged",
        "occasionally_active",
        "at_risk",
        "lapsed",
    ]
    assert tiers["matrix"] == [
        [1, 0, 0, 0, 0],
        [0, 0, 0, 1, 0],
        [0, 0, 0, 0, 1],
        [0, 1, 1, 0, 0],
    ]


def test_tier_expression_of_ones_own(url: str) -> None:
    tiers = analytics_of(url, tier="count(purchase) > 0").data["tiers"]
    # Buyers at 4 March: cat (ann buys on the 5th); at 1 April: ann, cat, dan. Booleans read as 1 and 0.
    # Rows: eve stays 0 and ann moves to 1; cat stays 1; of the newcomers bob is 0 and dan 1.
    assert tiers["from_labels"] == ["0", "1", "(not yet seen)"]
    assert tiers["matrix"] == [[1, 1], [0, 1], [1, 1]]


def test_tier_of_a_customer_attribute(url: str) -> None:
    store = open_store(url, create=False)
    try:
        with store.begin() as conn:
            upsert_customers(conn, [{"id": "ann", "plan": "pro"}], 0)
    finally:
        store.dispose()
    tiers = analytics_of(url, tier="plan").data["tiers"]
    # ann is "pro" at both ends; cat and eve have no plan; bob and dan are first seen in the window.
    assert tiers["from_labels"] == ["pro", "(none)", "(not yet seen)"]
    assert tiers["to_labels"] == ["pro", "(none)"]
    assert tiers["matrix"] == [[1, 0], [0, 2], [0, 2]]


def test_rfm_grid_by_hand(url: str) -> None:
    rfm = analytics_of(url).data["rfm"]
    cells = {(c["r"], c["f"]): c for c in rfm["cells"] if c["customers"]}
    # Recency at 1 April: dan 10.6 days, ann 26.5, cat 82: R = 1 + floor(5 * smaller / 3): 4, 2, 1.
    # Frequency among the buyers: ann 1, cat 1, dan 2: F 1, 1, 4.
    assert cells == {
        (4, 4): {"r": 4, "f": 4, "segment": "loyal", "customers": 1, "revenue": 60.0},
        (2, 1): {"r": 2, "f": 1, "segment": "hibernating", "customers": 1, "revenue": 50.0},
        (1, 1): {"r": 1, "f": 1, "segment": "lost", "customers": 1, "revenue": 20.0},
    }
    assert rfm["customers"] == 3 and rfm["without_conversion"] == 2 and len(rfm["cells"]) == 25


def test_activity_events_of_ones_choice(url: str) -> None:
    data = analytics_of(url, activity=("purchase",)).data
    days = {d["date"]: d["dau"] for d in data["active"]["days"] if d["dau"]}
    assert days == {"2024-03-05": 1, "2024-03-20": 1, "2024-03-21": 1}
    assert data["settings"]["activity"] == ["purchase"]


def test_bad_windows_and_an_empty_store(url: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not before"):
        analytics_of(url, TO, FROM)
    with pytest.raises(UsageError, match="no events before 2023-01-01"):
        analytics_of(url, None, date(2023, 1, 1))
    with pytest.raises(UsageError, match="the store has no signup event"):
        analytics_of(url, activity=("session_start", "signup"))
    with pytest.raises(UsageError, match=r"EVENT\.PROPERTY"):
        analytics_of(url, nps="score")
    empty = sqlite_url(tmp_path / "empty.db")
    open_store(empty).dispose()
    with pytest.raises(UsageError, match="the store holds no events"):
        analytics_of(empty, None, None)


def test_default_window_is_all_the_data(url: str) -> None:
    window = analytics_of(url, None, None).data["window"]
    assert window == {"from": "2023-11-01", "to": "2024-04-01", "days": 152}


def test_export_as_parquet_and_csv(url: str, tmp_path: Path) -> None:
    analytics = analytics_of(url)
    written = export_analytics(analytics, tmp_path / "out")
    names = sorted(p.name for p in written)
    assert names == [
        "daily_active.parquet",
        "periods.parquet",
        "retention.parquet",
        "rfm.parquet",
        "tier_transitions.parquet",
    ]
    daily = pq.read_table(tmp_path / "out" / "daily_active.parquet").to_pylist()
    assert len(daily) == 28 and daily[1] == {
        "date": "2024-03-05",
        "dau": 1,
        "wau": 1,
        "mau": 1,  # ann (20 February and 5 March: one customer); cat's 15 January is before 5 February
        "stickiness": 1.0,
        "full_month": True,
    }
    export_analytics(analytics, tmp_path / "csv" / "shop.csv")
    periods = pcsv.read_csv(tmp_path / "csv" / "shop_periods.csv").to_pylist()
    assert [row["churned"] for row in periods] == [0, 3, 0, 1]
    retention = pcsv.read_csv(tmp_path / "csv" / "shop_retention.csv").to_pylist()
    assert len(retention) == 2 * 4 * 3 and {row["measurable"] for row in retention} == {False}
    with pytest.raises(UsageError, match="folder"):
        export_analytics(analytics, tmp_path / "x.json")
