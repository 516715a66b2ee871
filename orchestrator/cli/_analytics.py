"""``orchestrator analytics``: engagement analytics over the store's events
(``measure.engagement_analytics``), printed as tables, JSON or one HTML page, and exported as Parquet or
CSV tables with ``--export``."""

from __future__ import annotations

import json
import sys
from datetime import date

from orchestrator.cli._errors import UsageError
from orchestrator.cli._output import print_table
from orchestrator.cli._settings import Args
from orchestrator.cli._stores import existing_store


def _day(option: str, text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a day such as 2024-03-01") from None


def run_analytics(args: Args) -> int:
    from orchestrator.measure import (
        AnalyticsSettings,
        analytics_heading,
        analytics_html,
        analytics_sections,
        engagement_analytics,
        export_analytics,
    )

    start, end = _day("--from", args.start), _day("--to", args.end)
    if start is not None and end is not None and start >= end:
        raise UsageError(f"--from {start} is not before --to {end} (--to is the first day left out)")
    if args.output is not None and args.format != "html":
        raise UsageError("--output is for --format html")
    if args.export is not None and args.export.suffix.lower() not in ("", ".csv", ".parquet"):
        raise UsageError(f"--export {args.export}: give a folder, or a file name ending in .csv or .parquet")
    settings = AnalyticsSettings(
        activity=tuple(args.activity),
        conversion=args.conversion,
        revenue=args.revenue,
        period=args.period,
        nps=args.nps,
        csat=args.csat,
        ces=args.ces,
        tier=args.tier,
        currency=args.currency,
    )
    store = existing_store(args.db, "the store is empty: ingest customers and events first")
    try:
        analytics = engagement_analytics(store, start, end, settings)
    finally:
        store.dispose()
    if args.export is not None:
        for path in export_analytics(analytics, args.export):
            print(f"wrote {path}", file=sys.stderr)
    if args.format == "json":
        print(json.dumps(analytics.data, indent=2))
    elif args.format == "html":
        page = analytics_html(analytics)
        if args.output is None:
            sys.stdout.write(page)
        else:
            args.output.write_text(page, encoding="utf-8")
            print(f"wrote {args.output}", file=sys.stderr)
    else:
        for line in analytics_heading(analytics.data):
            print(line)
        for section in analytics_sections(analytics.data):
            print(f"\n{section.title}")
            print_table(section.columns, section.rows, indent=2)
            for note in section.notes:
                print(f"  ({note})")
    return 0
