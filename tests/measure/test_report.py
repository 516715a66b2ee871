"""The journey lift report, from a store written here directly (the report reads only the store, so no
engine is needed): figures against independent computations, the export, the global holdout layer, the
split check after a ramp and after a broken split, and the HTML page rendered by a real headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import struct
import subprocess
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from scipy import stats as sps
from sqlalchemy import text
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from orchestrator.cli import main
from orchestrator.clock import to_us
from orchestrator.holdout import assign_arms
from orchestrator.ingest import ingest_events_records
from orchestrator.measure._report import journey_report
from orchestrator.measure._stats import cuped_lift
from orchestrator.store import open_store, register_version, sqlite_url
from orchestrator.store._customers import upsert_customers

#: Entries start at midnight: the daily rows below count whole days from here.
START = datetime(2024, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)
TOL = 1e-9

JOURNEY = """\
id: {id}
version: 1
signal: count(signup, within=1d) > 0
holdout: {holdout}
steps:
  - send:
      channel: email
      subject: "Welcome"
      template: welcome.txt
goal: {{event: purchase, within: 3d, revenue: amount}}
"""


@dataclass
class Built:
    db: Path
    url: str
    as_of: datetime


def _insert(conn: Any, sql: str, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(text(sql), rows)


def build_store(
    path: Path,
    n: int = 3000,
    seed: int = 1,
    global_percent: float = 5.0,
    percents: tuple[float, float] = (20.0, 20.0),
    drop_holdout: float = 0.0,
) -> Built:
    """A store as the engine leaves it: customers with a tier, pre-entry purchases, one journey whose
    entrants spread over 14 days with arms from ``assign_arms`` (``percents`` in force in the first and
    second week), conversions with revenue (treatment converts more), and a last tick at day 16."""
    rng = np.random.default_rng(seed)
    store = open_store(sqlite_url(path))
    ids = [f"c{i:05d}" for i in range(n)]
    tiers = rng.choice(["gold", "silver", "bronze"], n)
    propensity = rng.gamma(1.5, 1.0, n)
    entered = to_us(START) + rng.integers(0, 14 * 86400, n) * 1_000_000
    with store.begin() as conn:
        upsert_customers(conn, [{"id": c, "tier": t} for c, t in zip(ids, tiers.tolist(), strict=True)], 0)
    pre_events = []
    for i in range(n):
        for _ in range(rng.poisson(propensity[i])):
            at = entered[i] - int(rng.integers(1, 27 * 86400)) * 1_000_000
            pre_events.append(
                {
                    "customer_id": ids[i],
                    "event": "purchase",
                    "ts": datetime.fromtimestamp(at / 1e6, UTC),
                    "properties": {"amount": round(float(rng.gamma(2.0, 15.0)), 2)},
                }
            )
    report = ingest_events_records(store, pre_events, now_us=to_us(START))
    assert report.rejected == 0
    first_week = entered < to_us(START + 7 * DAY)
    arms_a = assign_arms("welcome", ids, percents[0], global_percent)
    arms_b = assign_arms("welcome", ids, percents[1], global_percent)
    held = np.where(first_week, arms_a.held_out, arms_b.held_out)
    layer = np.where(first_week, arms_a.layer, arms_b.layer)
    percent = np.where(first_week, arms_a.percent, arms_b.percent)
    bucket = np.where(first_week, arms_a.bucket, arms_b.bucket)
    reason = np.where(first_week, arms_a.reason, arms_b.reason)
    keep = ~(held & (layer == "journey") & (rng.random(n) < drop_holdout))
    rate = np.minimum(0.9, 0.03 + 0.15 * propensity) * np.where(held, 1.0, 1.35)
    converted = rng.random(n) < rate
    delay = rng.integers(60, 3 * 86400 - 60, n) * 1_000_000
    revenue = np.where(converted, np.round(rng.gamma(2.0, 20.0, n), 2), 0.0)
    with store.begin() as conn:
        keys = dict(conn.execute(text("SELECT id, key FROM customers")).all())
        register_version(conn, "welcome", 1, "d1", JOURNEY.format(id="welcome", holdout=percents[1]), 0)
        _insert(
            conn,
            "INSERT INTO holdout_assignments (journey_id, customer_key, arm, bucket, percent, assigned_us, "
            "reason, layer) VALUES ('welcome', :k, :a, :b, :p, :t, :r, :l)",
            [
                {
                    "k": keys[ids[i]],
                    "a": "holdout" if held[i] else "treatment",
                    "b": float(bucket[i]),
                    "p": float(percent[i]),
                    "t": int(entered[i]),
                    "r": str(reason[i]),
                    "l": str(layer[i]),
                }
                for i in np.flatnonzero(keep)
            ],
        )
        for i in np.flatnonzero(keep):
            instance = conn.execute(
                text(
                    "INSERT INTO journey_instances (journey_id, version, customer_key, state, status, "
                    "holdout, entered_us) VALUES ('welcome', 1, :k, 's0', 'completed', :h, :t) RETURNING id"
                ),
                {"k": keys[ids[i]], "h": bool(held[i]), "t": int(entered[i])},
            ).scalar()
            if converted[i]:
                conn.execute(
                    text(
                        "INSERT INTO conversions (instance_id, journey_id, version, customer_key, holdout, "
                        "entered_us, converted_us, revenue) VALUES (:i, 'welcome', 1, :k, :h, :t, :c, :r)"
                    ),
                    {
                        "i": instance,
                        "k": keys[ids[i]],
                        "h": bool(held[i]),
                        "t": int(entered[i]),
                        "c": int(entered[i] + delay[i]),
                        "r": float(revenue[i]),
                    },
                )
        as_of = START + 16 * DAY
        conn.execute(
            text("INSERT INTO ticks (now_us, seconds, summary) VALUES (:t, 0.1, '{}')"), {"t": to_us(as_of)}
        )
    store.dispose()
    return Built(path, sqlite_url(path), as_of)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build_store(tmp_path_factory.mktemp("report") / "r.db")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


# --- Figures -------------------------------------------------------------------------------------------


def test_arms_equal_the_assignments_table(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "report", "welcome", "--db", built.url, "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    as_of_us = to_us(built.as_of)
    window_us = 3 * 86400 * 1_000_000
    counts = dict(
        _rows(
            built.db,
            "SELECT CASE WHEN h.layer = 'global' THEN 'global holdout' ELSE h.arm END, COUNT(*) "
            "FROM journey_instances i JOIN holdout_assignments h ON h.customer_key = i.customer_key "
            f"AND h.journey_id = i.journey_id WHERE i.entered_us + {window_us} <= {as_of_us} GROUP BY 1",
        )
    )
    arms = {a["name"]: a for a in report["lift"]["arms"]}
    assert {k: v["n"] for k, v in arms.items()} == {
        "treatment": counts["treatment"],
        "holdout": counts["holdout"],
    }
    assert report["lift"]["global_holdout"]["n"] == counts["global holdout"]
    total = _rows(built.db, "SELECT COUNT(*) FROM journey_instances")[0][0]
    assert report["entries"] == total
    assert report["matured_entries"] == sum(counts.values())
    assert report["still_in_window"] == total - sum(counts.values())
    # The split check uses only the journey layer, at its declared 20%.
    srm = report["lift"]["srm"]
    assert srm["expected"]["holdout"] == pytest.approx(0.2 * (counts["treatment"] + counts["holdout"]))
    assert srm["flagged"] is False and "20%" in srm["declared"]


def test_conversion_and_revenue_lift_match_independent_computation(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run(capsys, "report", "welcome", "--db", built.url, "--format", "json")[1]
    report = json.loads(out)
    as_of_us, window_us = to_us(built.as_of), 3 * 86400 * 1_000_000
    rows = _rows(
        built.db,
        "SELECT h.arm, c.instance_id IS NOT NULL, COALESCE(c.revenue, 0) FROM journey_instances i "
        "JOIN holdout_assignments h ON h.customer_key = i.customer_key AND h.journey_id = i.journey_id "
        "LEFT JOIN conversions c ON c.instance_id = i.id "
        f"WHERE h.layer = 'journey' AND i.entered_us + {window_us} <= {as_of_us}",
    )
    arm = np.array([r[0] for r in rows])
    conv = np.array([r[1] for r in rows], dtype=float)
    rev = np.array([r[2] for r in rows], dtype=float)
    t, c = arm == "treatment", arm == "holdout"
    x_t, n_t, x_c, n_c = int(conv[t].sum()), int(t.sum()), int(conv[c].sum()), int(c.sum())
    metrics = {m["name"]: m for m in report["lift"]["metrics"]}
    rate = metrics["conversion"]["comparisons"][0]
    assert rate["arm"] == "treatment" and rate["control"] == "holdout"
    assert rate["absolute"] == pytest.approx(x_t / n_t - x_c / n_c, abs=TOL)
    low, high = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="newcomb", compare="diff")
    assert (rate["absolute_ci"]["low"], rate["absolute_ci"]["high"]) == pytest.approx((low, high), abs=TOL)
    assert rate["p_value"] == pytest.approx(proportions_ztest([x_t, x_c], [n_t, n_c])[1], rel=1e-9)
    assert rate["p_value"] < 0.05  # the simulated effect (+35% relative) is found
    revenue = metrics["revenue"]["comparisons"][0]
    welch = sps.ttest_ind(rev[t], rev[c], equal_var=False)
    assert revenue["absolute"] == pytest.approx(rev[t].mean() - rev[c].mean(), abs=TOL)
    assert revenue["p_value"] == pytest.approx(welch.pvalue, rel=1e-9)
    arms = {a["name"]: a for a in report["lift"]["arms"]}
    assert arms["treatment"]["conversions"] == x_t and arms["holdout"]["conversions"] == x_c
    assert arms["treatment"]["revenue_sd"] == pytest.approx(rev[t].std(ddof=1), abs=TOL)
    # The timeline ends on the headline figure and only grows.
    timeline = report["timeline"]
    assert len(timeline) == 13  # entry days 0..12 have closed windows at day 16
    assert timeline[-1]["absolute"] == pytest.approx(rate["absolute"], abs=TOL)
    assert timeline[-1]["ci"] == rate["absolute_ci"]
    for end in ("low", "high"):
        assert timeline[-1]["always_valid_ci"][end] == pytest.approx(rate["always_valid_ci"][end], abs=1e-12)
    sizes = [p["n_treatment"] + p["n_holdout"] for p in timeline]
    assert sizes == sorted(sizes) and sizes[-1] == n_t + n_c
    assert all(p["always_valid_ci"]["low"] <= p["ci"]["low"] for p in timeline)


def test_export_reproduces_every_number(
    built: Built, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    parquet, csv_path = tmp_path / "rows.parquet", tmp_path / "rows.csv"
    args = ["report", "welcome", "--db", built.url, "--format", "json", "--cuped", "--by", "tier"]
    code, out, err = run(capsys, *args, "--export", str(parquet))
    assert code == 0 and f"to {parquet}" in err
    report = json.loads(out)
    assert run(capsys, *args, "--export", str(csv_path))[0] == 0
    table = pq.read_table(parquet)
    expected_columns = {
        "customer_id",
        "arm",
        "layer",
        "assigned_at",
        "holdout_percent",
        "reason",
        "entered_at",
        "counted",
        "converted",
        "converted_at",
        "revenue",
        "pre_conversions",
        "pre_revenue",
        "tier",
    }
    assert expected_columns <= set(table.column_names)
    assert table.num_rows == report["entries"]
    from_csv = pcsv.read_csv(csv_path)
    assert from_csv.num_rows == table.num_rows
    assert from_csv.column("customer_id").to_pylist() == table.column("customer_id").to_pylist()
    assert from_csv.column("revenue").to_pylist() == pytest.approx(table.column("revenue").to_pylist())

    data = {name: np.array(table.column(name).to_pylist(), dtype=object) for name in table.column_names}
    use = data["counted"].astype(bool) & np.isin(data["arm"], ["treatment", "holdout"])
    t = use & (data["arm"] == "treatment")
    c = use & (data["arm"] == "holdout")
    conv = data["converted"].astype(float)
    x_t, n_t, x_c, n_c = conv[t].sum(), t.sum(), conv[c].sum(), c.sum()
    metrics = {m["name"]: m for m in report["lift"]["metrics"]}
    rate = metrics["conversion"]["comparisons"][0]
    low, high = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="newcomb", compare="diff")
    assert (rate["absolute_ci"]["low"], rate["absolute_ci"]["high"]) == pytest.approx((low, high), abs=TOL)

    # CUPED from the exported covariates, through the public function.
    pre = data["pre_conversions"].astype(float)
    cuped = cuped_lift(conv[t], pre[t], conv[c], pre[c], "pre_conversions")
    assert cuped is not None and rate["cuped"]["theta"] == pytest.approx(cuped.theta, rel=1e-9)
    assert rate["cuped"]["variance_reduction"] > 0.05  # pre-entry purchases predict conversion here
    cuped_width = rate["cuped"]["absolute_ci"]["high"] - rate["cuped"]["absolute_ci"]["low"]
    assert cuped_width < rate["absolute_ci"]["high"] - rate["absolute_ci"]["low"]

    # Pre-entry covariates against a correlated SQL subquery (a different computation).
    pre_sql = dict(
        _rows(
            built.db,
            "SELECT i.id, (SELECT COUNT(*) FROM events e JOIN event_types y ON y.id = e.type_id "
            "WHERE y.name = 'purchase' AND e.customer_key = i.customer_key AND e.ts_us < i.entered_us "
            "AND e.ts_us >= i.entered_us - 28 * 86400 * 1000000) FROM journey_instances i",
        )
    )
    exported = dict(zip(table.column("instance_id").to_pylist(), pre.tolist(), strict=True))
    assert exported == {k: float(v) for k, v in pre_sql.items()}

    # The segment breakdown equals the analysis restricted to each tier.
    segments = {s["value"]: s for s in report["lift"]["segments"]["values"]}
    assert set(segments) == {"bronze", "gold", "silver"}
    gold = use & (data["tier"] == "gold")
    gold_n = {a["name"]: a["n"] for a in segments["gold"]["arms"]}
    assert gold_n == {"holdout": int((gold & c).sum()), "treatment": int((gold & t).sum())}


def test_table_output(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "report", "welcome", "--db", built.url, "--cuped")
    assert code == 0
    assert "conversion rate lift" in out and "global holdout" in out
    assert "always-valid 95% interval" in out and "minimum detectable effect at 80% power" in out
    assert "with CUPED on pre_conversions" in out
    assert "arm sizes match the declared split" in out


def test_ramped_percent_is_not_a_mismatch_but_a_broken_split_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ramped = build_store(tmp_path / "ramp.db", n=4000, seed=2, percents=(30.0, 10.0))
    code, out, _ = run(capsys, "report", "welcome", "--db", ramped.url, "--format", "json")
    report = json.loads(out)
    srm = report["lift"]["srm"]
    assert srm["flagged"] is False and "changed over time" in srm["declared"]
    assert any("holdout percent changed" in w for w in report["warnings"])
    # Comparing against a flat 10% (the percent now in force) would have been a false alarm.
    observed = [srm["observed"]["treatment"], srm["observed"]["holdout"]]
    assert sps.chisquare(observed, [0.9 * sum(observed), 0.1 * sum(observed)]).pvalue < 0.001

    broken = build_store(tmp_path / "broken.db", n=4000, seed=3, drop_holdout=0.25)
    code, out, _ = run(capsys, "report", "welcome", "--db", broken.url)
    assert code == 0 and "SAMPLE RATIO MISMATCH" in out
    code, out, _ = run(capsys, "report", "welcome", "--db", broken.url, "--format", "json")
    assert json.loads(out)["lift"]["srm"]["flagged"] is True


def test_report_usage_errors(built: Built, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "report", "welcome", "--db", built.url, "--export", str(tmp_path / "x.xlsx"))
    assert code == 2 and ".parquet or .csv" in err
    code, _, err = run(capsys, "report", "welcome", "--db", built.url, "--pre-period", "28")
    assert code == 2 and "--pre-period" in err
    code, _, err = run(capsys, "report", "welcome", "--db", built.url, "--now", "2024-03-10")
    assert code == 2 and "time zone" in err
    code, _, err = run(capsys, "report", "nope", "--db", built.url)
    assert code == 1 and "known: welcome" in err


def test_report_as_of_an_earlier_instant(built: Built) -> None:
    store = open_store(built.url, create=False)
    try:
        early = journey_report(store, "welcome", as_of_us=to_us(START + 5 * DAY))
        late = journey_report(store, "welcome")
    finally:
        store.dispose()
    assert early.matured < late.matured and early.entries < late.entries
    assert early.rows is not None and bool((early.rows.converted_us < to_us(START + 5 * DAY)).all())


# --- HTML in a real browser ----------------------------------------------------------------------------


def _decode_png(path: Path) -> tuple[int, int, np.ndarray]:
    """A small PNG reader (8-bit RGB/RGBA, non-interlaced): width, height and an (h, w, channels) array."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    pos, idat = 8, bytearray()
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(bytes(idat))
    stride = width * channels
    out = np.zeros((height, stride), dtype=np.uint8)
    previous = np.zeros(stride, dtype=np.int32)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int32)
        if kind == 0:
            row = line
        elif kind == 2:
            row = (line + previous) & 0xFF
        elif kind == 1:
            # Sub: a running sum per channel along the row.
            row = (np.cumsum(line.reshape(width, channels), axis=0) & 0xFF).reshape(-1)
        else:
            row = np.zeros(stride, dtype=np.int32)
            up = previous.tolist()
            cur = line.tolist()
            vals = [0] * stride
            for i in range(stride):
                a = vals[i - channels] if i >= channels else 0
                b = up[i]
                if kind == 3:
                    vals[i] = (cur[i] + ((a + b) >> 1)) & 0xFF
                else:
                    c = up[i - channels] if i >= channels else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                    vals[i] = (cur[i] + pred) & 0xFF
            row = np.array(vals, dtype=np.int32)
        out[y] = row
        previous = row
    return width, height, out.reshape(height, width, channels)


def _near(pixels: np.ndarray, colour: str, tolerance: int = 12) -> int:
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(pixels[..., :3].astype(int) - rgb).max(axis=-1) <= tolerance).sum())


def test_html_report_renders_in_headless_chromium(
    built: Built, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    page = tmp_path / "welcome.html"
    code, _, err = run(capsys, "report", "welcome", "--db", built.url, "--format", "html", "-o", str(page))
    assert code == 0, err
    html = page.read_text()
    # Self-contained: no script, no external resource (the SVG namespace URI is a name, never fetched).
    assert "<script" not in html and " src=" not in html and " href=" not in html
    assert "@import" not in html and "url(" not in html
    assert html.count("<svg") == 5  # two charts per metric, one timeline
    assert "Cumulative lift by entry day" in html and "<polygon" in html

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; CI must apt-get install chromium")
        pytest.skip("chromium is not installed (apt-get install chromium); required when CI is set")
    shot = tmp_path / "welcome.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1200,1600",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    print(f"\nscreenshot: {shot}")
    assert shot.stat().st_size > 30_000  # a blank 1200x1600 page compresses to a few kilobytes
    width, height, pixels = _decode_png(shot)
    assert (width, height) == (1200, 1600)
    colours = np.unique(pixels[..., :3].reshape(-1, 3), axis=0)
    assert len(colours) > 50, "the page rendered as (nearly) one colour"
    # The arms' dots and whiskers were drawn: treatment blue and holdout grey, hundreds of pixels each.
    assert _near(pixels, "#2563eb") > 300
    assert _near(pixels, "#6b7280", tolerance=6) > 100
    # The split check banner (green) is on the first screen.
    assert _near(pixels, "#ecfdf5", tolerance=2) > 10_000
