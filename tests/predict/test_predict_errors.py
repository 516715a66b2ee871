"""What ``orchestrator predict fit`` says when it cannot fit: one line with the cause, never a traceback."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.ingest import ingest_events_records
from orchestrator.store import open_store

NOW_US = int(datetime(2024, 6, 1, tzinfo=UTC).timestamp() * 1_000_000)


def store_with(tmp_path: Path, records: list[dict[str, object]]) -> str:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    store = open_store(url)
    ingest_events_records(store, records, now_us=NOW_US)
    store.dispose()
    return url


def purchase(customer: str, day: str, amount: object) -> dict[str, object]:
    return {
        "customer_id": customer,
        "event": "purchase",
        "ts": f"{day}T10:00:00Z",
        "properties": {"amount": amount},
    }


def fit(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["predict", "fit", *argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err.strip()


def test_no_purchases_before_the_calibration_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = store_with(tmp_path, [purchase("a", "2024-03-01", 5.0)])
    code, err = fit(capsys, "--calibration-end", "2024-01-31", "--db", url)
    assert code == 1
    assert "no purchase event on or before 2024-01-31: nothing to fit" in err
    assert len(err.splitlines()) == 1


def test_no_repeat_purchases(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = store_with(tmp_path, [purchase("a", "2024-01-02", 5.0), purchase("b", "2024-01-03", 6.0)])
    code, err = fit(capsys, "--calibration-end", "2024-01-31", "--db", url)
    assert code == 1
    assert "2 customer(s) and 0 with a repeat purchase" in err


def test_values_that_are_not_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = store_with(tmp_path, [purchase("a", "2024-01-02", "five"), purchase("a", "2024-01-09", 5.0)])
    code, err = fit(capsys, "--calibration-end", "2024-01-31", "--db", url)
    assert code == 1
    assert "purchase.amount has values that are not numbers" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--calibration-end", "2024-13-01"],
            "--calibration-end '2024-13-01' is not a day such as 1997-09-30",
        ),
        (
            ["--calibration-end", "2024-01-31", "--holdout-end", "2024-01-01"],
            "is not after the calibration's end",
        ),
    ],
)
def test_bad_days(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    url = store_with(tmp_path, [purchase("a", "2024-01-02", 5.0)])
    code, err = fit(capsys, *argv, "--db", url)
    assert code in (1, 2)
    assert message in err


def test_without_the_predict_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = store_with(tmp_path, [purchase(c, d, 5.0) for c in "ab" for d in ("2024-01-02", "2024-01-09")])
    monkeypatch.setitem(sys.modules, "pymc_marketing", None)  # import fails as if it were not installed
    code, err = fit(capsys, "--calibration-end", "2024-01-31", "--db", url)
    assert code == 1
    assert (
        "predictions need the optional extra 'predict'" in err
        and "pip install 'orchestrator[predict]'" in err
    )


def test_evaluate_reads_the_stores_fit_and_refuses_a_prediction_without_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestrator.store import save_prediction_fit

    (tmp_path / "journeys").mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "t.txt").write_text("Hi")
    (tmp_path / "journeys" / "j.yaml").write_text(
        "id: j\nversion: 1\nholdout: 0\nsignal: p_alive(purchase) < 0.5\n"
        "steps:\n  - send: {channel: email, subject: s, template: t.txt}\n"
    )
    events = tmp_path / "events.csv"
    events.write_text(
        "customer_id,event,ts,amount\n"
        + "".join(f"gone,purchase,2023-0{m}-01T00:00:00Z,5\n" for m in range(1, 5))
        + "".join(f"steady,purchase,2024-0{m}-01T00:00:00Z,5\n" for m in range(1, 6))
    )
    argv = ["evaluate", "--journeys", str(tmp_path / "journeys"), "--events", str(events),
            "--now", "2024-06-01T00:00:00Z", "--format", "json"]  # fmt: skip
    code = main(argv)  # a scratch store: no fit
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines() == [
        "orchestrator evaluate: a journey reads a prediction without its fit (--db names a store that holds "
        "one):",
        "j: p_alive(purchase) reads a fit of the purchase models and the store has none: run orchestrator "
        "predict fit --event purchase --save",
    ]
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    store = open_store(url)
    with store.begin() as conn:
        save_prediction_fit(
            conn, 0, "purchase", "amount", 19_000, {"r": 0.5, "alpha": 2.0, "a": 0.5, "b": 1.5}
        )
    store.dispose()
    assert main([*argv, "--db", url]) == 0
    # gone: 3 repeat months, silent for 14 months since: p_alive near 0; steady bought last month: high.
    assert json.loads(capsys.readouterr().out)["journeys"]["j"]["count"] == 1
