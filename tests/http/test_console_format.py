"""How the console writes figures (``http._console_format``) and where a login may send the browser on
to (``http._console_auth.safe_next``): plain functions, checked without a server."""

from __future__ import annotations

import math

from orchestrator.http._console_auth import safe_next
from orchestrator.http._console_format import count, lift_summary, p_value, rate, when


def test_instants_counts_rates_and_p_values_read_plainly() -> None:
    assert when("2024-03-21T20:00:00Z") == "2024-03-21 20:00 UTC"
    assert when("2024-03-21T20:00:05+00:00") == "2024-03-21 20:00:05 UTC"
    assert when(None) == "-" and when("") == "-"
    assert count(1234567) == "1,234,567" and count(None) == "-"
    assert rate(0.4553) == "45.5%" and rate(0.1132, signed=True) == "+11.3%" and rate(-0.02, True) == "-2.0%"
    assert rate(math.nan) == "-" and rate(None) == "-"
    assert p_value(0.0004) == "< 0.001" and p_value(0.18233) == "0.182" and p_value(None) == "-"


def test_lift_summary_takes_the_conversion_comparison_of_a_report() -> None:
    report = {
        "goal": {"event": "purchase", "within": "2d", "revenue": None},
        "entries": 120,
        "matured_entries": 100,
        "still_in_window": 20,
        "warnings": [],
        "lift": {
            "alpha": 0.1,
            "arms": [
                {"name": "treatment", "n": 80, "conversions": 40, "rate": 0.5},
                {"name": "holdout", "n": 20, "conversions": 6, "rate": 0.3},
            ],
            "metrics": [
                {"name": "revenue", "comparisons": [{"arm": "treatment", "control": "holdout"}]},
                {
                    "name": "conversion",
                    "comparisons": [
                        {
                            "arm": "treatment",
                            "control": "holdout",
                            "absolute": 0.2,
                            "absolute_ci": {"low": 0.01, "high": 0.39},
                            "relative": 0.667,
                            "p_value": 0.04,
                            "verdict": {"call": "not enough data yet", "reason": "small sample"},
                        }
                    ],
                },
            ],
        },
    }
    summary = lift_summary(report)
    assert [a["name"] for a in summary["arms"]] == ["treatment", "holdout"]
    lift = summary["lift"]
    assert (lift["absolute"], lift["low"], lift["high"]) == (0.2, 0.01, 0.39)
    assert lift["confidence"] == "90%" and lift["call"] == "not enough data yet"
    assert lift["reason"] == "small sample"
    assert lift_summary({**report, "lift": None})["lift"] is None
    assert lift_summary({"goal": None})["arms"] == []


def test_a_login_goes_on_only_to_a_page_of_the_console() -> None:
    assert safe_next("/journeys/rescue") == "/journeys/rescue"
    for outside in (None, "", "//evil.example/", "https://evil.example/", "/\\evil", "journeys", "/a\r\nb"):
        assert safe_next(outside) == "/"
