"""What ``orchestrator predict fit`` says when it cannot fit: one line with the cause, never a traceback."""

from __future__ import annotations

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
