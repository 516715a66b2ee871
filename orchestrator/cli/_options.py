"""The command line's options, each declared once and shared by the commands that take it.

Options that name a setting (``--db``, ``--journeys``, ``--outbox``, ...) default to None: ``settings``
then takes the value from the workspace config, the environment or the default, in that order. Their help
says what "not given" means. Help texts avoid square brackets: the help is rendered with rich markup.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

import typer

# ------------------------------------------------------------------------------------------- parsers


def probability(text: str) -> float:
    """A parser for a number strictly between 0 and 1 (``--alpha``, ``--power``)."""
    try:
        value = float(text)
    except ValueError:
        raise typer.BadParameter(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise typer.BadParameter(f"expected a number between 0 and 1, got {text}")
    return value


def positive(text: str) -> float:
    """A parser for a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise typer.BadParameter(f"expected a positive number, got {text!r}") from None
    if not (value > 0.0 and math.isfinite(value)):
        raise typer.BadParameter(f"expected a positive number, got {text}")
    return value


# ------------------------------------------------------------------------------------------- global

ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        metavar="FILE",
        help="the workspace config file (default: orchestrator.yaml in the current folder, if any)",
    ),
]
Verbose = Annotated[bool, typer.Option("-v", "--verbose", metavar="", help="log what the engine does")]

# ------------------------------------------------------------------------------------------- store

Db = Annotated[
    str | None,
    typer.Option(
        "--db", metavar="URL", help="store URL (default: $ORCHESTRATOR_DB or sqlite:///orchestrator.db)"
    ),
]

# ------------------------------------------------------------------------------------------- workspace

#: Options that take every value up to the next option (``--journeys a.yaml b.yaml``), as they always did;
#: repeating the option (``--journeys a.yaml --journeys b.yaml``) works as well.
GREEDY = ("--journeys", "--events", "--compare")
#: Greedy options that may be given without a value (as none).
GREEDY_OPTIONAL = frozenset({"--events"})

Journeys = Annotated[
    list[str] | None,
    typer.Option(
        "--journeys",
        metavar="PATH...",
        help="journey files or folders (default: journeys/)",
        show_default=False,
    ),
]
Templates = Annotated[
    Path | None,
    typer.Option(
        "--templates",
        metavar="DIR",
        help="templates folder (default: the nearest templates/ above each journey)",
    ),
]
Outbox = Annotated[
    Path | None,
    typer.Option(
        "--outbox", metavar="DIR", help="folder the outbox adapter writes messages to (default: outbox/)"
    ),
]

# ------------------------------------------------------------------------------------------- engine

GlobalHoldout = Annotated[
    float | None,
    typer.Option(
        "--global-holdout",
        metavar="PERCENT",
        help="percent of all customers that no journey messages, a control group across journeys "
        "(default: $ORCHESTRATOR_GLOBAL_HOLDOUT, else 0)",
    ),
]
Delivery = Annotated[
    list[str] | None,
    typer.Option(
        "--delivery",
        metavar="CHANNEL=MODE",
        help="a channel's delivery mode: at_least_once (default; a message in flight at a crash is sent "
        "again) or at_most_once (it is marked uncertain, never sent twice); repeatable "
        "(default: $ORCHESTRATOR_DELIVERY, e.g. email=at_most_once,sms=at_least_once)",
        show_default=False,
    ),
]
Now = Annotated[
    str | None,
    typer.Option(
        "--now",
        metavar="ISO-8601",
        help="the instant to run at, e.g. 2024-03-01T09:00:00Z (default: the wall clock)",
    ),
]

# ------------------------------------------------------------------------------------------- output

TableFormat = Annotated[
    Literal["table", "json"], typer.Option("--format", help="table for people, json for programs")
]
ReportFormat = Annotated[
    Literal["table", "json", "html"], typer.Option("--format", help="how to write the report")
]
TextFormat = Annotated[
    Literal["text", "json"], typer.Option("--format", help="text for people, json for programs")
]

DiagramFormat = Annotated[
    Literal["mermaid", "dot", "svg"],
    typer.Option(
        "--format", help="mermaid (a stateDiagram-v2), dot (Graphviz source) or svg (a self-contained image)"
    ),
]
DiagramDb = Annotated[
    str | None,
    typer.Option("--db", metavar="URL", help="the store whose counts to write on the steps and transitions"),
]
DiagramOutput = Annotated[
    Path | None,
    typer.Option("--output", "-o", metavar="FILE", help="write the diagram here, not to stdout"),
]

# ------------------------------------------------------------------------------------------- statistics

Alpha = Annotated[float, typer.Option("--alpha", metavar="P", parser=probability, help="1 - confidence")]
Power = Annotated[float, typer.Option("--power", metavar="P", parser=probability, help="power of the MDE")]
Currency = Annotated[
    str | None,
    typer.Option(
        "--currency",
        metavar="CODE",
        help="write money in this ISO 4217 currency, e.g. EUR (default: currency in orchestrator.yaml, "
        "else plain numbers)",
    ),
]
Output = Annotated[
    Path | None,
    typer.Option("--output", "-o", metavar="FILE", help="write the report here, not to stdout"),
]
#: Resolved to ``measure._sequential.DEFAULT_SEQUENTIAL_TAU`` when not given (its module loads numpy).
TAU_DEFAULT_TEXT = "0.1"
Tau = Annotated[
    float | None,
    typer.Option(
        "--tau",
        metavar="SD",
        parser=positive,
        help="always-valid interval tuning: mixing sd in standard deviations of the metric "
        f"(default {TAU_DEFAULT_TEXT}); choose before looking at the data",
    ),
]

# ------------------------------------------------------------------------------------------- uplift

Bayes = Annotated[
    bool,
    typer.Option(
        "--bayes",
        metavar="",
        help="add the Bayesian view of each rate: chance to beat the control and expected losses "
        "(Beta(1, 1) priors; descriptive, the call is not made from it)",
    ),
]
Uplift = Annotated[
    bool,
    typer.Option(
        "--uplift",
        metavar="",
        help="add who the message moves: a two-model uplift estimate (scikit-learn), its Qini curve, Qini "
        "coefficient and AUUC, and the four quadrants; a model estimate, not a measured lift",
    ),
]
#: ``measure._uplift.LEARNERS`` (that module loads numpy).
UpliftModel = Annotated[
    Literal["logistic", "boosting"],
    typer.Option(
        "--uplift-model",
        help="the classifier per arm: logistic regression or gradient-boosted trees",
    ),
]

# ------------------------------------------------------------------------------------------- logs

LogFormat = Annotated[
    Literal["text", "json"] | None,
    typer.Option("--log-format", help="text lines or one JSON object a line (default text)"),
]
LogLevel = Annotated[
    Literal["debug", "info", "warning", "error"] | None,
    typer.Option("--log-level", help="the least important lines logged (default info)"),
]
