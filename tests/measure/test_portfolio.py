"""``orchestrator report --all``: every journey of the demo shop side by side. Each row carries its own
report's figures; the q-values are statsmodels' Benjamini-Hochberg of the journeys' p-values; the adjusted
intervals are Newcombe's at level 1 - max(R, 1) alpha / m, recomputed with statsmodels; messages sent are
counted from the ledger directly."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import pytest
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep

from orchestrator.cli import main
from orchestrator.holdout import global_holdout

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("shop") / "demo"
    data, journeys = str(ROOT / "examples" / "demo"), str(ROOT / "journeys")
    assert main(["demo", "--days", "14", "--ticks-per-day", "2", "--data", data, "--journeys", journeys,
                 "--dir", str(folder), "--global-holdout", "10"]) == 0  # fmt: skip
    return folder / "orchestrator.db"


def test_every_journey_side_by_side(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    db = f"sqlite:///{shop}"
    assert main(["report", "--all", "--db", db, "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    rows = {r["journey"]: r for r in result["journeys"]}
    with contextlib.closing(sqlite3.connect(shop)) as conn:
        sent = dict(conn.execute("SELECT journey_id, COUNT(*) FROM messages WHERE status = 'sent' "
                                 "AND NOT test GROUP BY journey_id").fetchall())  # fmt: skip
        ran = {r[0] for r in conn.execute("SELECT DISTINCT journey_id FROM journey_versions")}
    assert set(rows) == ran
    for name, row in rows.items():
        assert main(["report", name, "--db", db, "--format", "json"]) == 0
        own = json.loads(capsys.readouterr().out)
        assert row["sent"] == sent.get(name, 0)
        if own["lift"] is None:  # no goal, or no entry whose window closed: said, not compared
            assert row["lift"] is None and row["p_value"] is None and row["note"]
            continue
        conversion = next(m for m in own["lift"]["metrics"] if m["name"] == "conversion")
        [comparison] = conversion["comparisons"]
        assert row["lift"] == comparison["absolute"] and row["p_value"] == comparison["p_value"]
        assert row["interval"] == comparison["absolute_ci"]
        assert row["call"] == comparison["verdict"]["call"]
        assert row["sent"] == sent.get(name, 0)
        assert row["incremental_conversions"] == pytest.approx(row["lift"] * row["treated"], rel=1e-12)
        assert row["incremental_conversions_per_1000_messages"] == pytest.approx(
            1000 * row["incremental_conversions"] / row["sent"], rel=1e-12
        )
    tested = [r for r in result["journeys"] if r["p_value"] is not None]
    assert len(tested) >= 2
    reject, q_values, _, _ = multipletests([r["p_value"] for r in tested], alpha=0.05, method="fdr_bh")
    assert [r["q_value"] for r in tested] == pytest.approx(list(q_values), rel=1e-12)
    assert result["compared"] == len(tested) and result["selected"] == int(reject.sum())
    level = 1 - max(result["selected"], 1) * 0.05 / len(tested)
    assert result["adjusted_level"] == pytest.approx(level, rel=1e-12)
    for r in tested:
        x_t = round(r["treated_rate"] * r["treated"])
        x_c = round(r["held_out_rate"] * r["held_out"])
        low, high = confint_proportions_2indep(x_t, r["treated"], x_c, r["held_out"], method="newcomb",
                                               compare="diff", alpha=1 - level)  # fmt: skip
        assert (r["adjusted_interval"]["low"], r["adjusted_interval"]["high"]) == pytest.approx((low, high))
        assert r["adjusted_interval"]["low"] <= r["interval"]["low"]  # wider than the journey's own
    # The demo ran with a 10% global holdout: the program's lift compares it with everyone else.
    program = result["program"]
    with contextlib.closing(sqlite3.connect(shop)) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM customers")]
        layers = conn.execute(
            "SELECT DISTINCT percent FROM holdout_assignments WHERE layer = 'global'"
        ).fetchall()
    assert layers == [(10.0,)] and program["global_holdout"]["percent"] == 10.0
    held = int(global_holdout(ids, 10.0).sum())
    assert (program["held_out"], program["everyone_else"]) == (held, len(ids) - held)
    assert program["goal"]["event"] == "purchase" and program["lift"]["control"] == "global holdout"


def test_the_table_and_the_refusals(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    db = f"sqlite:///{shop}"
    assert main(["report", "--all", "--db", db]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Journeys side by side: ")
    assert "Benjamini-Hochberg q-values" in out and "Benjamini-Yekutieli" in out
    assert "The whole program: the global holdout (messaged by no journey) against everyone else" in out
    for argv, message in [
        (["report", "--db", db], "name a JOURNEY, or give --all"),
        (["report", "--all", "winback", "--db", db], "--all reports every journey: leave out JOURNEY"),
        (["report", "--all", "--uplift", "--db", db], "--uplift is for one journey's report, not --all"),
    ]:
        assert main(argv) == 2
        assert message in capsys.readouterr().err
