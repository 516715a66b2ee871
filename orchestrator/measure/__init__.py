"""Measurement: lift statistics and lift reports (reads the store only).

The holdout assignment both the engine and the reports use is ``orchestrator.holdout``.

- ``_stats`` gathers the statistics, pure functions over numpy arrays: ``_numbers`` (intervals, input
  checks, the relative lift), ``_rates`` (per-arm totals, rate lifts), ``_means`` (Welch mean lifts),
  ``_power`` (MDE, sample-ratio check), ``_sequential`` (always-valid intervals), ``_cuped``, and
  ``_analysis`` (``analyze``, segments).
- ``_report`` gathers a journey's report: ``_entry_rows`` (per-entry columns from the store, their export),
  ``_timeline`` (cumulative lift by day), ``_journey`` (``journey_report``); its split arms and content A/B
  (``_splits``) and per-message figures (``_messages``), written by ``_splits_text`` / ``_splits_html``.
- ``_backtest`` reads a backtest's report from its scratch store (``backtest_report``), lays it out as
  tables (``backtest_sections``) and compares two (``compare_backtests``); ``_backtest_html`` draws it
  as one self-contained page.
- ``_portfolio`` lays every journey's lift side by side (``portfolio``), with Benjamini-Hochberg q-values
  and false-coverage-adjusted intervals across journeys, under the whole program's lift (``_program``:
  ``program_lift``, the global holdout against everyone else); ``_portfolio_html`` draws it as one page or
  as an email-safe fragment (``render_portfolio_html``).
- ``_guardrails`` compares a journey's arms on unsubscribes, complaints and bounces, with an alarm when the
  treated arm is worse (``_guardrails_text`` / ``_guardrails_html`` write them as text and a page section).
- ``_weekly`` builds the weekly report the daemon emails (``weekly_report``: the portfolio to date and
  over the last 7 days, the week's engagement beside the week before) and renders it for mail clients
  (``weekly_email``: subject, text and inline, self-contained HTML).
- ``_funnel`` reads a journey version's per-step funnel per arm (``journey_funnel``) from the transition
  counts the engine keeps and the ledger; ``_funnel_text`` writes it as aligned text.
- ``_analytics`` reads engagement analytics over the store's events (``engagement_analytics``: active
  customers, retention cohorts, churn, conversion, tiers, the RFM grid, surveys) and exports them
  (``export_analytics``), with the formulas in ``_analytics_formulas``; ``_analytics_text`` lays them out as
  tables and ``_analytics_html`` draws them as one self-contained page.
- ``_uplift`` estimates who a message moves (a two-model learner scored out of fold, the Qini curve, Qini
  coefficient and AUUC, the four quadrants); ``_uplift_text`` / ``_uplift_html`` write it as text and as a
  page section.
- ``_text`` / ``_html``: plain text and self-contained HTML pages for any analysis and journey report, both
  writing figures through ``_formats`` (``_svg`` holds what the charts share).

The names below are imported when first used (PEP 562): the statistics load scipy and statsmodels, the
uplift view scikit-learn (the optional extra ``uplift``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator._lazy import lazy_exports

if TYPE_CHECKING:
    from orchestrator.measure._analytics import (
        Analytics,
        AnalyticsSettings,
        engagement_analytics,
        export_analytics,
    )
    from orchestrator.measure._analytics_html import analytics_html
    from orchestrator.measure._analytics_text import analytics_heading, analytics_sections
    from orchestrator.measure._backtest import (
        BacktestReport,
        BacktestSection,
        backtest_heading,
        backtest_report,
        backtest_sections,
        compare_backtests,
        comparison_sections,
    )
    from orchestrator.measure._backtest_html import backtest_html, comparison_html
    from orchestrator.measure._experiment import InputError, read_experiment
    from orchestrator.measure._funnel import JourneyFunnel, export_funnel, journey_funnel, journey_funnels
    from orchestrator.measure._funnel_text import funnel_lines
    from orchestrator.measure._html import render_analysis_html, render_journey_html
    from orchestrator.measure._portfolio import Portfolio, portfolio, portfolio_lines
    from orchestrator.measure._portfolio_html import render_portfolio_html
    from orchestrator.measure._program import ProgramLift, program_lift
    from orchestrator.measure._report import export_entries, format_table, journey_report
    from orchestrator.measure._sequential import DEFAULT_SEQUENTIAL_TAU
    from orchestrator.measure._stats import analyze
    from orchestrator.measure._text import format_analysis, report_text
    from orchestrator.measure._uplift import (
        UpliftResult,
        UpliftSetupError,
        UpliftView,
        auuc,
        qini_coefficient,
        uplift_estimate,
    )
    from orchestrator.measure._uplift_text import uplift_lines
    from orchestrator.measure._weekly import (
        WeeklyEmail,
        WeeklyReport,
        weekly_email,
        weekly_html,
        weekly_report,
    )

_EXPORTS: dict[str, str] = {
    "Analytics": "orchestrator.measure._analytics",
    "AnalyticsSettings": "orchestrator.measure._analytics",
    "analytics_heading": "orchestrator.measure._analytics_text",
    "analytics_html": "orchestrator.measure._analytics_html",
    "analytics_sections": "orchestrator.measure._analytics_text",
    "engagement_analytics": "orchestrator.measure._analytics",
    "export_analytics": "orchestrator.measure._analytics",
    "BacktestReport": "orchestrator.measure._backtest",
    "BacktestSection": "orchestrator.measure._backtest",
    "backtest_heading": "orchestrator.measure._backtest",
    "backtest_html": "orchestrator.measure._backtest_html",
    "backtest_report": "orchestrator.measure._backtest",
    "backtest_sections": "orchestrator.measure._backtest",
    "compare_backtests": "orchestrator.measure._backtest",
    "comparison_html": "orchestrator.measure._backtest_html",
    "comparison_sections": "orchestrator.measure._backtest",
    "DEFAULT_SEQUENTIAL_TAU": "orchestrator.measure._sequential",
    "InputError": "orchestrator.measure._experiment",
    "JourneyFunnel": "orchestrator.measure._funnel",
    "export_funnel": "orchestrator.measure._funnel",
    "journey_funnel": "orchestrator.measure._funnel",
    "journey_funnels": "orchestrator.measure._funnel",
    "funnel_lines": "orchestrator.measure._funnel_text",
    "analyze": "orchestrator.measure._stats",
    "export_entries": "orchestrator.measure._report",
    "format_analysis": "orchestrator.measure._text",
    "format_table": "orchestrator.measure._report",
    "journey_report": "orchestrator.measure._report",
    "Portfolio": "orchestrator.measure._portfolio",
    "portfolio": "orchestrator.measure._portfolio",
    "portfolio_lines": "orchestrator.measure._portfolio",
    "render_portfolio_html": "orchestrator.measure._portfolio_html",
    "ProgramLift": "orchestrator.measure._program",
    "program_lift": "orchestrator.measure._program",
    "WeeklyEmail": "orchestrator.measure._weekly",
    "WeeklyReport": "orchestrator.measure._weekly",
    "weekly_email": "orchestrator.measure._weekly",
    "weekly_html": "orchestrator.measure._weekly",
    "weekly_report": "orchestrator.measure._weekly",
    "read_experiment": "orchestrator.measure._experiment",
    "render_analysis_html": "orchestrator.measure._html",
    "render_journey_html": "orchestrator.measure._html",
    "report_text": "orchestrator.measure._text",
    "UpliftResult": "orchestrator.measure._uplift",
    "UpliftSetupError": "orchestrator.measure._uplift",
    "UpliftView": "orchestrator.measure._uplift",
    "auuc": "orchestrator.measure._uplift",
    "qini_coefficient": "orchestrator.measure._uplift",
    "uplift_estimate": "orchestrator.measure._uplift",
    "uplift_lines": "orchestrator.measure._uplift_text",
}

__all__ = [
    "DEFAULT_SEQUENTIAL_TAU",
    "Analytics",
    "AnalyticsSettings",
    "BacktestReport",
    "BacktestSection",
    "InputError",
    "JourneyFunnel",
    "Portfolio",
    "ProgramLift",
    "UpliftResult",
    "UpliftSetupError",
    "UpliftView",
    "WeeklyEmail",
    "WeeklyReport",
    "analytics_heading",
    "analytics_html",
    "analytics_sections",
    "analyze",
    "auuc",
    "backtest_heading",
    "backtest_html",
    "backtest_report",
    "backtest_sections",
    "compare_backtests",
    "comparison_html",
    "comparison_sections",
    "engagement_analytics",
    "export_analytics",
    "export_entries",
    "export_funnel",
    "format_analysis",
    "format_table",
    "funnel_lines",
    "journey_funnel",
    "journey_funnels",
    "journey_report",
    "portfolio",
    "portfolio_lines",
    "program_lift",
    "qini_coefficient",
    "read_experiment",
    "render_analysis_html",
    "render_journey_html",
    "render_portfolio_html",
    "report_text",
    "uplift_estimate",
    "uplift_lines",
    "weekly_email",
    "weekly_html",
    "weekly_report",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
