"""The commands and their options, on typer: what ``orchestrator --help`` lists.

Each command here only declares its arguments (the shared ones come from ``options``), resolves its
settings through ``settings.Settings`` (flag, else workspace config, else environment, else default) and
hands them, as one ``Args`` namespace, to ``commands.cmd_<name>``, which does the work. Everything heavy is
imported by the command that needs it, when it runs: building this app loads no numpy, SQLAlchemy,
pyarrow, jinja2 or pydantic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from typer.core import TyperCommand

from orchestrator import __version__
from orchestrator.cli import _options as o
from orchestrator.cli._settings import Args, Settings, check_config_path

CONTEXT = {"help_option_names": ["-h", "--help"]}


@dataclass
class Root:
    """The options given before the command."""

    verbose: bool = False
    config: Path | None = None


def spread(args: list[str], greedy: set[str], optional: frozenset[str] = frozenset()) -> list[str]:
    """``--journeys a b c`` as ``--journeys a --journeys b --journeys c``: a greedy option takes every
    value up to the next option (or ``--``), as the command line always accepted. An ``optional`` one may
    take none (``--events`` alone: no files), and is then left out."""
    out: list[str] = []
    current: str | None = None
    taken = 0

    def leave() -> None:
        if current in optional and taken == 0:
            out.pop()  # the flag just added, with no value after it

    for i, token in enumerate(args):
        if token == "--":
            leave()
            current = None
            out.extend(args[i:])
            break
        if token in greedy:
            leave()
            current, taken = token, 0
            out.append(token)
        elif current is not None and not _is_option(token):
            out.extend([token] if taken == 0 else [current, token])
            taken += 1
        else:
            leave()
            current = None
            out.append(token)
    else:
        leave()
    return out


def _is_option(token: str) -> bool:
    if not token.startswith("-") or token == "-":
        return False
    try:
        float(token)  # a negative number is a value
    except ValueError:
        return True
    return False


class Command(TyperCommand):
    """A command whose greedy options (``options.GREEDY``) take several values after one flag."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        greedy = {opt for param in self.params for opt in getattr(param, "opts", ()) if opt in o.GREEDY}
        return super().parse_args(ctx, spread(args, greedy, o.GREEDY_OPTIONAL) if greedy else args)


def _version(value: bool) -> None:
    if value:
        print(f"orchestrator {__version__}")
        raise typer.Exit()


app = typer.Typer(
    name="orchestrator",
    help="Journey orchestration: behaviour signals, YAML journeys, safe messages, lift reports.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings=CONTEXT,
    suggest_commands=True,
    rich_markup_mode=None,
)


@app.callback()
def root(
    ctx: typer.Context,
    verbose: o.Verbose = False,
    config: o.ConfigFile = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            metavar="",
            callback=_version,
            is_eager=True,
            expose_value=False,
            help="print the version",
        ),
    ] = False,
) -> None:
    """Journey orchestration: behaviour signals, YAML journeys, safe messages, lift reports."""
    ctx.obj = Root(verbose=verbose, config=config)


def _invoke(
    ctx: typer.Context, name: str, config: Path | None, build: Callable[[Settings], dict[str, Any]]
) -> int:
    """Resolve the settings, then run ``commands.cmd_<name>``; the exit code (``guard.run_guarded``)."""
    from orchestrator.cli._guard import run_guarded

    root = ctx.find_root().obj if isinstance(ctx.find_root().obj, Root) else Root()
    config_path = config if config is not None else root.config

    def body() -> int:
        from orchestrator.cli import _commands as commands

        check_config_path(config_path)
        settings = Settings(config_path)
        args = Args(command=name, verbose=root.verbose, config=config_path, **build(settings))
        return int(getattr(commands, f"cmd_{name.replace('-', '_').replace(' ', '_')}")(args) or 0)

    return run_guarded(name, root.verbose, body)


def command(name: str, help: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return app.command(name, cls=Command, help=help, short_help=help, context_settings=CONTEXT, **kwargs)


# ------------------------------------------------------------------------------------------- commands


@command("validate", "check journey files and their templates")
def validate(
    ctx: typer.Context,
    paths: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[PATH]...",
            help="journey files or folders (default: the workspace config's journeys, else journeys/)",
            show_default=False,
        ),
    ] = None,
    templates: o.Templates = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            metavar="URL",
            help="also check the journeys against this store: versions changed without a bump, names no "
            "stored data has carried, template reads of attributes no customer has",
        ),
    ] = None,
    config: o.ConfigFile = None,
) -> int:
    return _invoke(
        ctx,
        "validate",
        config,
        lambda s: {
            "paths": s.journeys(paths or None),
            "templates": s.templates(templates),
            "db": db,
            # Sends checked against the providers and webhooks the workspace config sets up.
            "workspace_config": s.workspace_config(),
        },
    )


@command("ingest", "load events or customers from JSONL, CSV or Parquet")
def ingest(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(metavar="FILE", help="JSONL, CSV or Parquet files")],
    kind: Annotated[
        Literal["events", "customers"] | None,
        typer.Option(
            "--kind",
            help="what the files hold (default: from each file as a whole: an event column, or event "
            "records)",
        ),
    ] = None,
    rejects: Annotated[
        Path | None,
        typer.Option(
            "--rejects",
            metavar="FILE",
            help="append every rejected row (source, line, reason) to FILE as JSON lines",
        ),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", metavar="", help="exit 1 when any row was rejected")
    ] = False,
    min_time: Annotated[
        str | None,
        typer.Option(
            "--min-time",
            metavar="ISO-8601",
            help="reject events earlier than this instant (default 1970-01-01T00:00:00Z)",
        ),
    ] = None,
    max_future: Annotated[
        str,
        typer.Option(
            "--max-future",
            metavar="DURATION",
            help="reject events later than this long after now",
        ),
    ] = "1d",
    chunk_rows: Annotated[
        int | None,
        typer.Option(
            "--chunk-rows",
            metavar="N",
            min=1,
            help="rows per transaction (default 200000 on SQLite, 50000 on PostgreSQL, where a chunk holds "
            "the events table's lock): a crash loses at most the chunk in flight, which a rerun stores",
        ),
    ] = None,
    format: o.TableFormat = "table",
    db: o.Db = None,
    config: o.ConfigFile = None,
) -> int:
    return _invoke(
        ctx,
        "ingest",
        config,
        lambda s: {
            "files": files,
            "kind": kind,
            "rejects": rejects,
            "strict": strict,
            "min_time": min_time,
            "max_future": max_future,
            "chunk_rows": chunk_rows,
            "format": format,
            "db": s.db(db),
        },
    )


@command("run", "run one tick of the engine")
def run(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", metavar="", help="run exactly one tick (required)")] = False,
    now: o.Now = None,
    journeys: o.Journeys = None,
    templates: o.Templates = None,
    outbox: o.Outbox = None,
    global_holdout: o.GlobalHoldout = None,
    delivery: o.Delivery = None,
    db: o.Db = None,
    config: o.ConfigFile = None,
) -> int:
    return _invoke(
        ctx,
        "run",
        config,
        lambda s: {
            "once": once,
            "now": now,
            **_engine_settings(s, journeys, templates, outbox, global_holdout, delivery, db),
        },
    )


def _engine_settings(
    s: Settings,
    journeys: list[str] | None,
    templates: Path | None,
    outbox: Path | None,
    global_holdout: float | None,
    delivery: list[str] | None,
    db: str | None,
) -> dict[str, Any]:
    """The settings ``run`` and ``daemon`` share, resolved (the workspace first, as the engine needs it)."""
    return {
        # Providers, webhooks and links; the secrets of the providers set up must be in the environment.
        "workspace_config": s.workspace_config(require_secrets=True),
        "journeys": s.journeys(journeys),
        "templates": s.templates(templates),
        "outbox": s.outbox(outbox),
        "global_holdout": s.global_holdout(global_holdout),
        "delivery": s.delivery(delivery),
        "delivery_source": s.delivery_source(delivery),
        "db": s.db(db),
    }


@command("daemon", "run ticks on a schedule until SIGTERM")
def daemon(
    ctx: typer.Context,
    interval: Annotated[
        float | None, typer.Option("--interval", metavar="SECONDS", help="seconds between ticks (default 60)")
    ] = None,
    inbox: Annotated[
        Path | None,
        typer.Option(
            "--inbox",
            metavar="DIR",
            help="ingest the files dropped here before each tick (kinds from DIR/events/, DIR/customers/ or "
            "NAME.events.EXT, NAME.customers.EXT; moved to DIR/done or DIR/failed)",
        ),
    ] = None,
    watch: Annotated[
        float | None,
        typer.Option(
            "--watch",
            metavar="SECONDS",
            help="look for changed journey, template and policy files this often and reload them "
            "(validated first); 0: only on SIGHUP (default 1)",
        ),
    ] = None,
    log_format: o.LogFormat = None,
    log_level: o.LogLevel = None,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            metavar="",
            help="also serve the HTTP API in this process (see the serve command), on the config's "
            "http.listen",
        ),
    ] = False,
    no_inbox: Annotated[
        bool,
        typer.Option(
            "--no-inbox",
            metavar="",
            help="leave the inbox to another worker (with several workers, one reads the inbox)",
        ),
    ] = False,
    journeys: o.Journeys = None,
    templates: o.Templates = None,
    outbox: o.Outbox = None,
    global_holdout: o.GlobalHoldout = None,
    delivery: o.Delivery = None,
    db: o.Db = None,
    config: o.ConfigFile = None,
    # Crash tests: a bound on the ticks, a simulated clock (start instant, moved by --simulated-step after
    # each tick, resumed after the last stored tick), a log of every delivery attempt, and a provider that
    # does not de-duplicate: smtp://HOST:PORT (email, no TLS) or http://HOST:PORT/PATH (Twilio-style SMS).
    max_ticks: Annotated[int | None, typer.Option("--max-ticks", hidden=True)] = None,
    simulated_clock: Annotated[str | None, typer.Option("--simulated-clock", hidden=True)] = None,
    simulated_step: Annotated[str, typer.Option("--simulated-step", hidden=True)] = "1h",
    attempt_log: Annotated[Path | None, typer.Option("--attempt-log", hidden=True)] = None,
    provider: Annotated[str | None, typer.Option("--provider", hidden=True)] = None,
) -> int:
    return _invoke(
        ctx,
        "daemon",
        config,
        lambda s: {
            "interval": s.interval(interval),
            "inbox": None if no_inbox else s.inbox(inbox),
            "serve": serve,
            "watch": s.watch(watch),
            "log_format": s.log_format(log_format),
            "log_level": s.log_level(log_level),
            "max_ticks": max_ticks,
            "simulated_clock": simulated_clock,
            "simulated_step": simulated_step,
            "attempt_log": attempt_log,
            "provider": provider,
            **_engine_settings(s, journeys, templates, outbox, global_holdout, delivery, db),
        },
    )


@command(
    "serve",
    "serve the HTTP API: events (Segment-compatible), unsubscribe and tracking links, health, metrics",
)
def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None,
        typer.Option(
            "--host", metavar="HOST", help="the address to listen on (default: the config's http.listen)"
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", metavar="PORT", help="the port to listen on (default: the config's http.listen)"
        ),
    ] = None,
    log_format: o.LogFormat = None,
    log_level: o.LogLevel = None,
    db: o.Db = None,
    config: o.ConfigFile = None,
) -> int:
    return _invoke(
        ctx,
        "serve",
        config,
        lambda s: {
            "host": host,
            "port": port,
            "log_format": s.log_format(log_format),
            "log_level": s.log_level(log_level),
            "db": s.db(db),
            "workspace_config": s.workspace_config(),  # API keys whose variable is unset accept nothing
        },
    )


@command("retire", "end a journey for good: cancel its queued messages and finish its active instances")
def retire(
    ctx: typer.Context,
    journey: Annotated[str, typer.Argument(metavar="JOURNEY", help="the journey id")],
    db: o.Db = None,
    config: o.ConfigFile = None,
) -> int:
    return _invoke(ctx, "retire", config, lambda s: {"journey": journey, "db": s.db(db)})


@command("report", "the lift report of a journey, or of every journey side by side with --all")
def report(
    ctx: typer.Context,
    journey: Annotated[str | None, typer.Argument(metavar="JOURNEY", help="journey id")] = None,
    all_journeys: Annotated[
        bool,
        typer.Option(
            "--all",
            metavar="",
            help="every journey's lift side by side, with Benjamini-Hochberg q-values and adjusted intervals",
        ),
    ] = False,
    format: o.ReportFormat = "table",
    now: Annotated[
        str | None,
        typer.Option(
            "--now", metavar="ISO-8601", help="report as of this instant (default: the last tick's instant)"
        ),
    ] = None,
    export: Annotated[
        Path | None,
        typer.Option(
            "--export",
            metavar="FILE",
            help="also write every entry (customer, arm, entered_at, converted, revenue, covariates...) to "
            "FILE.parquet or FILE.csv",
        ),
    ] = None,
    cuped: Annotated[
        bool,
        typer.Option(
            "--cuped", metavar="", help="add CUPED lifts using the goal's pre-entry history as covariate"
        ),
    ] = False,
    pre_period: Annotated[
        str,
        typer.Option(
            "--pre-period", metavar="DURATION", help="how far before entry the pre-entry covariates look"
        ),
    ] = "28d",
    by: Annotated[
        str | None, typer.Option("--by", metavar="ATTRIBUTE", help="break down by a customer attribute")
    ] = None,
    uplift: o.Uplift = False,
    feature: Annotated[
        list[str] | None,
        typer.Option(
            "--feature",
            metavar="ATTRIBUTE",
            help="with --uplift: a customer attribute to model on (repeat; default: every stored attribute "
            "but the contact, time zone and consent columns)",
            show_default=False,
        ),
    ] = None,
    uplift_model: o.UpliftModel = "logistic",
    bayes: o.Bayes = False,
    program_from: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="ISO-8601",
            help="with --all: where the program's lift starts (default: the first tick the store recorded)",
        ),
    ] = None,
    program_goal: Annotated[
        str | None,
        typer.Option(
            "--program-goal",
            metavar="EVENT",
            help="with --all: the conversion event of the program's lift (default: the goal event most "
            "journeys use)",
        ),
    ] = None,
    currency: o.Currency = None,
    alpha: o.Alpha = 0.05,
    power: o.Power = 0.8,
    tau: o.Tau = None,
    output: o.Output = None,
    db: o.Db = None,
    config: o.ConfigFile = None,
) -> int:
    return _invoke(
        ctx,
        "report",
        config,
        lambda s: {
            "journey": journey,
            "all": all_journeys,
            "program_from": program_from,
            "program_goal": program_goal,
            "global_holdout": s.global_holdout(None) if all_journeys else 0.0,
            "format": format,
            "now": now,
            "export": export,
            "cuped": cuped,
            "pre_period": pre_period,
            "by": by,
            "uplift": uplift,
            "feature": feature,
            "uplift_model": uplift_model,
            "bayes": bayes,
            "currency": s.currency(currency),
            "alpha": alpha,
            "power": power,
            "tau": tau,
            "output": output,
            "db": s.db(db),
        },
    )


@command("lift", "lift statistics of an experiment table (CSV): every arm against a control")
def lift(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="CSV file with a header row, one row per customer")
    ],
    arm: Annotated[str, typer.Option("--arm", metavar="COLUMN", help="the column naming each row's arm")],
    control: Annotated[
        str, typer.Option("--control", metavar="VALUE", help="the arm value of the control group")
    ],
    metric: Annotated[
        list[str],
        typer.Option(
            "--metric",
            metavar="COLUMN",
            help="an outcome column (repeat for several); 0/1 columns get rate statistics, others mean "
            "statistics",
        ),
    ],
    format: o.ReportFormat = "table",
    covariate: Annotated[
        str | None,
        typer.Option("--covariate", metavar="COLUMN", help="a pre-experiment numeric column for CUPED"),
    ] = None,
    by: Annotated[
        str | None, typer.Option("--by", metavar="COLUMN", help="repeat the analysis within each value")
    ] = None,
    split: Annotated[
        list[str] | None,
        typer.Option(
            "--split",
            metavar="ARM=WEIGHT",
            help="declared share of an arm for the sample-ratio check (repeat per arm; default: equal "
            "shares)",
            show_default=False,
        ),
    ] = None,
    uplift: o.Uplift = False,
    feature: Annotated[
        list[str] | None,
        typer.Option(
            "--feature",
            metavar="COLUMN",
            help="with --uplift: a column known before the experiment to model on (repeat); text columns are "
            "one-hot encoded",
            show_default=False,
        ),
    ] = None,
    treatment: Annotated[
        str | None,
        typer.Option(
            "--treatment",
            metavar="VALUE",
            help="with --uplift: model this arm against the control only (default: every arm in turn)",
        ),
    ] = None,
    uplift_model: o.UpliftModel = "logistic",
    bayes: o.Bayes = False,
    alpha: o.Alpha = 0.05,
    power: o.Power = 0.8,
    tau: o.Tau = None,
    output: o.Output = None,
    config: o.ConfigFile = None,
) -> int:
    return _invoke(
        ctx,
        "lift",
        config,
        lambda s: {
            "file": file,
            "arm": arm,
            "control": control,
            "metric": metric,
            "format": format,
            "covariate": covariate,
            "by": by,
            "split": split,
            "uplift": uplift,
            "feature": feature,
            "treatment": treatment,
            "uplift_model": uplift_model,
            "bayes": bayes,
            "alpha": alpha,
            "power": power,
            "tau": tau,
            "output": output,
        },
    )


@command("backtest", "replay past events through the journeys on a simulated clock, sending nothing")
def backtest(
    ctx: typer.Context,
    start: Annotated[
        str,
        typer.Option("--from", metavar="DATE", help="the window's start (2024-01-16, or ISO-8601 instant)"),
    ],
    end: Annotated[str, typer.Option("--to", metavar="DATE", help="the window's end, not included")],
    tick: Annotated[str, typer.Option("--tick", metavar="DURATION", help="time between ticks")] = "1h",
    events: Annotated[
        list[Path] | None,
        typer.Option(
            "--events",
            metavar="FILE...",
            help="event files to replay (JSONL, CSV, Parquet); without them, the events of --db",
            show_default=False,
        ),
    ] = None,
    customers: Annotated[
        Path | None,
        typer.Option("--customers", metavar="FILE", help="the customers of --events (CSV, JSONL, Parquet)"),
    ] = None,
    journeys: o.Journeys = None,
    compare: Annotated[
        list[str] | None,
        typer.Option(
            "--compare",
            metavar="PATH...",
            help="other journey files or folders: run the same window with them and show both side by side",
            show_default=False,
        ),
    ] = None,
    templates: o.Templates = None,
    global_holdout: o.GlobalHoldout = None,
    format: o.ReportFormat = "table",
    output: o.Output = None,
    save: Annotated[
        bool, typer.Option("--save", metavar="", help="keep the report in the store (--db) for later")
    ] = False,
    db: o.Db = None,
    config: o.ConfigFile = None,
) -> int:
    return _invoke(
        ctx,
        "backtest",
        config,
        lambda s: {
            "start": start,
            "end": end,
            "tick": tick,
            "events": events or [],
            "customers": customers,
            "journeys": s.journeys(journeys),
            "compare": compare or [],
            "templates": s.templates(templates),
            "global_holdout": s.global_holdout(global_holdout),
            "format": format,
            "output": output,
            "save": save,
            "from_db": db is not None,
            "db": s.db(db),
            "save_db": s.db(db),
        },
    )


@command(
    "analytics", "engagement analytics: active customers, retention, churn, conversion, tiers, RFM, surveys"
)
def analytics(
    ctx: typer.Context,
    start: Annotated[
        str | None,
        typer.Option("--from", metavar="DATE", help="the first UTC day (default: the first event's day)"),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option(
            "--to", metavar="DATE", help="the first UTC day left out (default: the day after the last event)"
        ),
    ] = None,
    period: Annotated[
        Literal["week", "month"],
        typer.Option("--period", help="the period of churn, conversion and surveys (weeks start on Monday)"),
    ] = "week",
    activity: Annotated[
        list[str] | None,
        typer.Option(
            "--activity",
            metavar="EVENT",
            help="an event that makes a customer active (repeat for several; default: any event)",
            show_default=False,
        ),
    ] = None,
    conversion: Annotated[
        str, typer.Option("--conversion", metavar="EVENT", help="the conversion event (and of the RFM grid)")
    ] = "purchase",
    revenue: Annotated[
        str, typer.Option("--revenue", metavar="PROPERTY", help="the conversion event's value property")
    ] = "amount",
    nps: Annotated[
        str, typer.Option("--nps", metavar="EVENT.PROPERTY", help="NPS answers, scores 0 to 10")
    ] = "nps_response.score",
    csat: Annotated[
        str, typer.Option("--csat", metavar="EVENT.PROPERTY", help="CSAT answers, scores 1 to 5")
    ] = "csat_response.score",
    ces: Annotated[
        str, typer.Option("--ces", metavar="EVENT.PROPERTY", help="CES answers, scores 1 to 7")
    ] = "ces_response.score",
    tier: Annotated[
        str | None,
        typer.Option(
            "--tier",
            metavar="EXPRESSION",
            help="the tier whose movement is counted (default: lifecycle_tier over the activity events)",
        ),
    ] = None,
    currency: o.Currency = None,
    format: o.ReportFormat = "table",
    output: o.Output = None,
    export: Annotated[
        Path | None,
        typer.Option(
            "--export",
            metavar="DIR_OR_FILE",
            help="also write every table: into a folder as Parquet, or beside NAME.csv / NAME.parquet as "
            "NAME_<table>.csv / .parquet",
        ),
    ] = None,
    db: o.Db = None,
    config: o.ConfigFile = None,
) -> int:
    return _invoke(
        ctx,
        "analytics",
        config,
        lambda s: {
            "start": start,
            "end": end,
            "period": period,
            "activity": activity or [],
            "conversion": conversion,
            "revenue": revenue,
            "nps": nps,
            "csat": csat,
            "ces": ces,
            "tier": tier,
            "currency": s.currency(currency),
            "format": format,
            "output": output,
            "export": export,
            "db": s.db(db),
        },
    )


@command(
    "weekly-report",
    "the weekly report the daemon emails (journeys and engagement): print it, write its HTML, or send it now",
)
def weekly_report(
    ctx: typer.Context,
    now: Annotated[
        str | None,
        typer.Option(
            "--now",
            metavar="ISO-8601",
            help="the report as of this instant, e.g. 2024-03-04T08:00:00Z (default: the last tick's)",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE.html", help="write the email's HTML here"),
    ] = None,
    send: Annotated[
        bool,
        typer.Option(
            "--send",
            metavar="",
            help="send it now to the list of reports.weekly through the email provider (a try: the daemon "
            "still sends the week's)",
        ),
    ] = False,
    outbox: o.Outbox = None,
    db: o.Db = None,
    config: o.ConfigFile = None,
) -> int:
    return _invoke(
        ctx,
        "weekly-report",
        config,
        lambda s: {
            "now": now,
            "output": output,
            "send": send,
            "outbox": s.outbox(outbox),
            "db": s.db(db),
            "workspace_config": s.workspace_config(require_secrets=send),
        },
    )


@command("evaluate", "count the customers each journey's signal matches at an instant")
def evaluate(
    ctx: typer.Context,
    now: Annotated[str, typer.Option("--now", metavar="ISO-8601", help="the evaluation instant")],
    journeys: o.Journeys = None,
    templates: o.Templates = None,
    events: Annotated[
        list[Path] | None,
        typer.Option(
            "--events",
            metavar="FILE...",
            help="event files to ingest first (into --db, or a temporary store when --db is not given)",
            show_default=False,
        ),
    ] = None,
    format: o.TableFormat = "table",
    db: Annotated[
        str | None,
        typer.Option("--db", metavar="URL", help="store URL (default: a temporary store for --events)"),
    ] = None,
    config: o.ConfigFile = None,
) -> int:
    return _invoke(
        ctx,
        "evaluate",
        config,
        lambda s: {
            "now": now,
            "journeys": s.journeys(journeys),
            "templates": s.templates(templates),
            "events": events or [],
            "format": format,
            "db": db,
        },
    )


@command("audience", "how many customers a journey would reach now: enter, held out, stopped, messaged")
def audience(
    ctx: typer.Context,
    journey: Annotated[str, typer.Argument(metavar="JOURNEY", help="journey id (or the journey's file)")],
    now: Annotated[
        str | None,
        typer.Option("--now", metavar="ISO-8601", help="the instant to estimate at (default: wall clock)"),
    ] = None,
    by: Annotated[
        str | None,
        typer.Option("--by", metavar="ATTRIBUTE", help="break the counts down by this customer attribute"),
    ] = None,
    top: Annotated[
        int, typer.Option("--top", metavar="N", min=1, help="values of --by shown; the rest as 'other'")
    ] = 10,
    journeys: o.Journeys = None,
    templates: o.Templates = None,
    global_holdout: o.GlobalHoldout = None,
    format: o.TableFormat = "table",
    db: o.Db = None,
    config: o.ConfigFile = None,
) -> int:
    return _invoke(
        ctx,
        "audience",
        config,
        lambda s: {
            "journey": journey,
            "now": now,
            "by": by,
            "top": top,
            "journeys": s.journeys(journeys),
            "templates": s.templates(templates),
            "global_holdout": s.global_holdout(global_holdout),
            "format": format,
            "db": s.db(db),
        },
    )


@command("plan", "what a changed journey file would do to the customers already inside the journey")
def plan(
    ctx: typer.Context,
    journey: Annotated[str, typer.Argument(metavar="JOURNEY", help="journey id (or the journey's file)")],
    journeys: o.Journeys = None,
    templates: o.Templates = None,
    format: o.TableFormat = "table",
    db: o.Db = None,
    config: o.ConfigFile = None,
) -> int:
    return _invoke(
        ctx,
        "plan",
        config,
        lambda s: {
            "journey": journey,
            "journeys": s.journeys(journeys),
            "templates": s.templates(templates),
            "format": format,
            "db": s.db(db),
        },
    )


@command("diagram", "draw a journey's steps and transitions: Mermaid or Graphviz (DOT) text, or an SVG image")
def diagram(
    ctx: typer.Context,
    journey: Annotated[
        str, typer.Argument(metavar="JOURNEY", help="the journey's file, or its id among --journeys")
    ],
    journeys: o.Journeys = None,
    templates: o.Templates = None,
    format: o.DiagramFormat = "mermaid",
    output: o.DiagramOutput = None,
    db: o.DiagramDb = None,
    config: o.ConfigFile = None,
) -> int:
    return _invoke(
        ctx,
        "diagram",
        config,
        lambda s: {
            "journey": journey,
            "journeys": s.journeys(journeys),
            "templates": s.templates(templates),
            "format": format,
            "output": output,
            "db": s.db(db) if db is not None else None,
        },
    )


@command("status", "instances per journey and step, due waits, outbox backlog, last tick")
def status(
    ctx: typer.Context,
    journey: Annotated[
        str | None,
        typer.Argument(
            metavar="[JOURNEY]",
            help="show this journey's per-step funnel instead, per version and arm",
            show_default=False,
        ),
    ] = None,
    format: o.TableFormat = "table",
    now: Annotated[
        str | None,
        typer.Option(
            "--now",
            metavar="ISO-8601",
            help="count due waits as of this instant (default: the last tick's instant, else the wall clock)",
        ),
    ] = None,
    stale_after: Annotated[
        str | None,
        typer.Option(
            "--stale-after",
            metavar="DURATION",
            help="the last tick is stale (exit 1) when older than this, e.g. 10m (default: three times the "
            "usual interval between the recent ticks, at least 1m; 1h after a single tick)",
        ),
    ] = None,
    db: o.Db = None,
    config: o.ConfigFile = None,
) -> int:
    return _invoke(
        ctx,
        "status",
        config,
        lambda s: {
            "journey": journey,
            "format": format,
            "now": now,
            "stale_after": stale_after,
            "db": s.db(db),
        },
    )


@command("test", "run the journey test files (*.test.yaml): customers, events and expectations")
def test(
    ctx: typer.Context,
    paths: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[PATH]...",
            help="test files or folders to find them in (default: the workspace config's journeys, else "
            "journeys/)",
            show_default=False,
        ),
    ] = None,
    format: o.TableFormat = "table",
    require_coverage: Annotated[
        bool,
        typer.Option(
            "--require-coverage",
            help="also fail when a transition, a goal or an exit_when of a journey under the paths was "
            "not taken by any test, or a journey has no test",
        ),
    ] = False,
    config: o.ConfigFile = None,
) -> int:
    return _invoke(
        ctx,
        "test",
        config,
        lambda s: {
            "paths": s.journeys(paths or None),
            "format": format,
            "require_coverage": require_coverage,
        },
    )


@command("why", "what happened to one customer in the journeys, and why")
def why(
    ctx: typer.Context,
    customer: Annotated[str, typer.Argument(metavar="CUSTOMER", help="the customer id")],
    journey: Annotated[
        str | None, typer.Option("--journey", metavar="JOURNEY", help="only this journey")
    ] = None,
    format: o.TextFormat = "text",
    db: o.Db = None,
    config: o.ConfigFile = None,
) -> int:
    return _invoke(
        ctx,
        "why",
        config,
        lambda s: {"customer": customer, "journey": journey, "format": format, "db": s.db(db)},
    )


@command("preview", "render what a send step would send a customer, without sending")
def preview(
    ctx: typer.Context,
    journey: Annotated[str, typer.Argument(metavar="JOURNEY", help="journey id")],
    step: Annotated[str, typer.Argument(metavar="STEP", help="the send step's id")],
    customer: Annotated[str, typer.Option("--customer", metavar="ID", help="the customer id")],
    journeys: o.Journeys = None,
    templates: o.Templates = None,
    now: Annotated[
        str | None, typer.Option("--now", metavar="ISO-8601", help="evaluate metrics at this instant")
    ] = None,
    format: o.TextFormat = "text",
    db: o.Db = None,
    config: o.ConfigFile = None,
) -> int:
    return _invoke(
        ctx,
        "preview",
        config,
        lambda s: {
            "journey": journey,
            "step": step,
            "customer": customer,
            "journeys": s.journeys(journeys),
            "templates": s.templates(templates),
            "now": now,
            "format": format,
            "db": s.db(db),
        },
    )


@command("init", "create a workspace: config, a journey with its templates, a policy and sample data")
def init(
    ctx: typer.Context,
    folder: Annotated[
        Path,
        typer.Argument(
            metavar="DIR",
            help="the folder to create it in (made if missing; existing files are never overwritten)",
        ),
    ] = Path("."),
) -> int:
    return _invoke(ctx, "init", None, lambda s: {"folder": folder})


@command("config", "print the settings in effect (config file, flags, environment), secrets masked")
def config_(
    ctx: typer.Context,
    format: Annotated[Literal["yaml", "json"], typer.Option("--format", help="yaml or json")] = "yaml",
    journeys: o.Journeys = None,
    templates: o.Templates = None,
    outbox: o.Outbox = None,
    global_holdout: o.GlobalHoldout = None,
    delivery: o.Delivery = None,
    db: o.Db = None,
    config: o.ConfigFile = None,
) -> int:
    return _invoke(
        ctx,
        "config",
        config,
        lambda s: {
            **_engine_settings(s, journeys, templates, outbox, global_holdout, delivery, db),
            "format": format,
            "workspace_config": s.workspace_config(),  # shown with the secrets that are not set
        },
    )


@command(
    "outbox-unpack",
    "write the messages of the outbox's spools (layout: spool) as one file each, as the files layout does",
)
def outbox_unpack(
    ctx: typer.Context,
    outbox: o.Outbox = None,
    channel: Annotated[
        list[str] | None,
        typer.Option("--channel", metavar="CHANNEL", help="only this channel (repeatable; default: all)"),
    ] = None,
    config: o.ConfigFile = None,
) -> int:
    return _invoke(
        ctx, "outbox-unpack", config, lambda s: {"outbox": s.outbox(outbox), "channels": channel or None}
    )


@command(
    "send-test",
    "send one message of a send step to an address through the configured provider, marked as a test",
)
def send_test(
    ctx: typer.Context,
    journey: Annotated[str, typer.Argument(metavar="JOURNEY", help="journey id")],
    step: Annotated[str, typer.Argument(metavar="STEP", help="the send step's id")],
    to: Annotated[
        str,
        typer.Option(
            "--to",
            metavar="ADDRESS",
            help="where it goes: an email address, a phone number, a device token or a webhook endpoint name",
        ),
    ],
    customer: Annotated[
        str | None,
        typer.Option(
            "--customer",
            metavar="ID",
            help="render it for this customer of the store (default: sample data, each customer attribute "
            "the templates read shown as [name])",
        ),
    ] = None,
    journeys: o.Journeys = None,
    templates: o.Templates = None,
    outbox: o.Outbox = None,
    db: o.Db = None,
    config: o.ConfigFile = None,
) -> int:
    return _invoke(
        ctx,
        "send-test",
        config,
        lambda s: {
            "journey": journey,
            "step": step,
            "to": to,
            "customer": customer,
            "journeys": s.journeys(journeys),
            "templates": s.templates(templates),
            "outbox": s.outbox(outbox),
            "db": s.db(db),
            "workspace_config": s.workspace_config(require_secrets=True),
        },
    )


@command("demo", "run the bundled demo on a fresh SQLite file")
def demo(
    ctx: typer.Context,
    dir: Annotated[
        Path,
        typer.Option(
            "--dir",
            metavar="DIR",
            help="a new or empty folder (or one an earlier demo made) for the demo's store and outbox",
        ),
    ] = Path("demo"),
    data: Annotated[
        Path, typer.Option("--data", metavar="DIR", help="folder with customers.csv and events.jsonl")
    ] = Path("examples/demo"),
    journeys: o.Journeys = None,
    days: Annotated[int, typer.Option("--days", help="simulated days to run after the history")] = 21,
    ticks_per_day: Annotated[int, typer.Option("--ticks-per-day", help="engine ticks per simulated day")] = 6,
    global_holdout: Annotated[
        float,
        typer.Option(
            "--global-holdout",
            metavar="PERCENT",
            min=0.0,
            max=100.0,
            help="percent of the shop's customers no journey messages, to measure the whole program with "
            "report --all",
        ),
    ] = 0.0,
    config: o.ConfigFile = None,
) -> int:
    return _invoke(
        ctx,
        "demo",
        config,
        lambda s: {
            "dir": dir,
            "data": data,
            "journeys": s.journeys(journeys),
            "days": days,
            "ticks_per_day": ticks_per_day,
            "global_holdout": global_holdout,
        },
    )


privacy_app = typer.Typer(
    name="privacy",
    help="what the store holds about a customer (access requests)",
    no_args_is_help=True,
    context_settings=CONTEXT,
    rich_markup_mode=None,
)
app.add_typer(privacy_app)


@privacy_app.command(
    "export",
    cls=Command,
    help="every record the store holds about one customer: attributes, consent changes, events, journey "
    "instances, holdout assignments, messages with their content, send choices, conversions, suppressions",
    short_help="every record the store holds about one customer",
    context_settings=CONTEXT,
)
def privacy_export(
    ctx: typer.Context,
    customer: Annotated[str, typer.Argument(metavar="CUSTOMER", help="the customer's id")],
    format: o.TableFormat = "table",
    db: o.Db = None,
    config: o.ConfigFile = None,
) -> int:
    return _invoke(
        ctx, "privacy export", config, lambda s: {"customer": customer, "format": format, "db": s.db(db)}
    )


predict_app = typer.Typer(
    name="predict",
    help="churn and lifetime-value models fitted on the store's purchases (the extra orchestrator[predict])",
    no_args_is_help=True,
    context_settings=CONTEXT,
    rich_markup_mode=None,
)
app.add_typer(predict_app)


@predict_app.command(
    "fit",
    cls=Command,
    help="fit BG/NBD and Gamma-Gamma on the purchases up to a day and print their parameters",
    short_help="fit the churn and lifetime-value models and print their parameters",
    context_settings=CONTEXT,
)
def predict_fit(
    ctx: typer.Context,
    calibration_end: Annotated[
        str | None,
        typer.Option(
            "--calibration-end",
            metavar="DATE",
            help="last day (YYYY-MM-DD, UTC, included) of the purchases fitted (default: yesterday)",
        ),
    ] = None,
    holdout_end: Annotated[
        str | None,
        typer.Option(
            "--holdout-end",
            metavar="DATE",
            help="also predict the cohort's repeat purchases after the calibration up to this day and "
            "count the ones that happened",
        ),
    ] = None,
    event: Annotated[str, typer.Option("--event", metavar="NAME", help="the purchase event")] = "purchase",
    value: Annotated[
        str, typer.Option("--value", metavar="PROPERTY", help="the purchase event's value property")
    ] = "amount",
    save: Annotated[
        bool,
        typer.Option("--save", help="keep the fit in the store, with its day and parameters"),
    ] = False,
    format: o.TableFormat = "table",
    db: o.Db = None,
    config: o.ConfigFile = None,
) -> int:
    return _invoke(
        ctx,
        "predict fit",
        config,
        lambda s: {
            "calibration_end": calibration_end,
            "holdout_end": holdout_end,
            "event": event,
            "value": value,
            "save": save,
            "format": format,
            "db": s.db(db),
        },
    )


@predict_app.command(
    "scores",
    cls=Command,
    help="every customer's predictions now from the newest kept fit: a summary, and the rows with --output",
    short_help="score the customers with the newest kept fit",
    context_settings=CONTEXT,
)
def predict_scores(
    ctx: typer.Context,
    event: Annotated[str, typer.Option("--event", metavar="NAME", help="the purchase event")] = "purchase",
    value: Annotated[
        str, typer.Option("--value", metavar="PROPERTY", help="the purchase event's value property")
    ] = "amount",
    horizon: Annotated[
        str,
        typer.Option("--horizon", metavar="DURATION", help="the horizon of the expected purchases and value"),
    ] = "365d",
    now: o.Now = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE", help="write one row per customer (.csv or .parquet)"),
    ] = None,
    format: o.TableFormat = "table",
    db: o.Db = None,
    config: o.ConfigFile = None,
) -> int:
    return _invoke(
        ctx,
        "predict scores",
        config,
        lambda s: {
            "event": event,
            "value": value,
            "horizon": horizon,
            "now": now,
            "output": output,
            "format": format,
            "db": s.db(db),
        },
    )


def build_app() -> Any:
    """The command line as a click command (what ``main`` runs)."""
    return typer.main.get_command(app)


__all__ = ["app", "build_app", "spread"]
