"""Money in the configured currency: ``currency:`` in orchestrator.yaml or ``--currency`` on ``report``,
``report --all`` and ``analytics``; an unknown code is refused with its reason."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.config import ConfigError, load_config
from orchestrator.money import check_currency, money
from tests.measure.test_report import Built, build_store


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build_store(tmp_path_factory.mktemp("currency") / "r.db")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_amounts_take_the_currency_symbol_its_decimals_and_a_sign_before_it() -> None:
    assert money(1234.5, "EUR") == "€1,234.50"
    assert money(1234.5, "GBP") == "£1,234.50"
    assert money(1234.4, "JPY") == "¥1,234"  # the yen has no decimals
    assert money(3.1, "EUR", signed=True) == "+€3.10"
    assert money(-3.1, "EUR", signed=True) == "-€3.10"
    assert money(-3.1, "EUR") == "-€3.10"
    assert money(0.001, "EUR", signed=True) == "€0.00"  # rounds to zero: no sign
    assert money(1234.5, None) == "1234.50" and money(2.0, None, signed=True) == "+2.00"
    assert check_currency(" usd ") == "USD"
    for bad in ("EURO", "XYZ", "12€", ""):
        with pytest.raises(ValueError, match="not an ISO 4217 currency code"):
            check_currency(bad)


def test_the_config_takes_a_currency_and_refuses_an_unknown_one_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "orchestrator.yaml"
    path.write_text("tick: 1m\ncurrency: eur\n")
    assert load_config(path).currency == "EUR"
    path.write_text("tick: 1m\ncurrency: EURO\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert f"{path}:2:11: currency:" in str(caught.value)
    assert "'EURO' is not an ISO 4217 currency code" in str(caught.value)


def test_report_writes_revenue_in_the_currency(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    code, plain, _ = run(capsys, "report", "welcome", "--db", built.url)
    assert code == 0 and "€" not in plain
    code, out, _ = run(capsys, "report", "welcome", "--db", built.url, "--currency", "EUR")
    assert code == 0
    lift = re.search(
        r"revenue per entry lift: ([+-]€[\d,]+\.\d\d) \(95% CI ([+-]?€[\d,.]+) to ([+-]?€[\d,.]+)\)", out
    )
    assert lift, out
    # The same figure as without a currency, written in euros.
    bare = re.search(r"revenue per entry lift: ([+-][\d,]+\.\d\d)", plain)
    assert bare and lift.group(1).replace("€", "") == bare.group(1)
    code, out, _ = run(
        capsys, "report", "welcome", "--db", built.url, "--currency", "EUR", "--format", "json"
    )
    assert code == 0 and json.loads(out)["currency"] == "EUR"
    code, out, _ = run(
        capsys, "report", "welcome", "--db", built.url, "--currency", "EUR", "--format", "html"
    )
    assert code == 0 and "€" in out


def test_the_workspace_config_sets_the_currency_and_the_flag_wins(
    built: Built, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "orchestrator.yaml"
    config.write_text(f"store: {built.url}\ncurrency: GBP\n")
    code, out, _ = run(capsys, "report", "welcome", "--config", str(config))
    assert code == 0 and re.search(r"revenue per entry lift: [+-]£[\d,]+\.\d\d", out), out
    code, out, _ = run(capsys, "report", "--all", "--config", str(config), "--format", "json")
    assert code == 0 and json.loads(out)["currency"] == "GBP"
    code, out, _ = run(capsys, "report", "welcome", "--config", str(config), "--currency", "JPY")
    assert code == 0 and "¥" in out and "£" not in out


def test_the_portfolio_writes_revenue_per_1000_messages_in_the_currency(built: Built) -> None:
    from orchestrator.measure import portfolio, portfolio_lines
    from orchestrator.store import open_store

    store = open_store(built.url, create=False)
    try:
        result = portfolio(store, currency="EUR")
    finally:
        store.dispose()
    row = result.rows[0]
    assert row.incremental_revenue is not None
    # The test store records no message: give the row 1,000 messages to see the column filled.
    with_sends = replace(row, sent=1000, revenue_per_1000=row.incremental_revenue)
    lines = portfolio_lines(replace(result, rows=(with_sends,)))
    assert lines[2].rstrip().endswith(money(row.incremental_revenue, "EUR")), lines[2]


def test_analytics_writes_the_rfm_revenue_in_the_currency(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "analytics", "--db", built.url, "--currency", "EUR")
    assert code == 0
    grid = out[out.index("RFM grid") :].split("RFM grid")[2]  # the revenue grid, after the customers one
    assert "€" in grid
    code, out, _ = run(capsys, "analytics", "--db", built.url, "--currency", "EUR", "--format", "json")
    assert json.loads(out)["settings"]["currency"] == "EUR"


def test_a_bad_currency_flag_is_one_line_with_its_reason(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "report", "welcome", "--db", built.url, "--currency", "EURO")
    assert code != 0 and out == ""
    assert "--currency: 'EURO' is not an ISO 4217 currency code" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
