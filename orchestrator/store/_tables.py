"""The store's tables.

Every instant is stored as integer microseconds since the Unix epoch (UTC), suffix ``_us``: integers load
straight into numpy columns and compare without time-zone surprises. Customers have a dense integer
``key`` (the row id) that every other table uses, so per-customer results are plain arrays indexed by key.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, Text, UniqueConstraint, false, text
from sqlmodel import Field, SQLModel


class Customer(SQLModel, table=True):
    __tablename__ = "customers"

    key: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True, index=True, description="the customer id used by the business")
    email: str | None = None
    phone: str | None = None
    push_token: str | None = None
    timezone: str | None = Field(default=None, description="IANA zone, e.g. Europe/Paris")
    # True or false as the customer's records said; NULL when no record said (the policy decides, see
    # ``language._policy_file.Consent``). Stores made before NULL was allowed are upgraded on open.
    consent_email: bool | None = None
    consent_sms: bool | None = None
    consent_push: bool | None = None
    attributes: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    updated_us: int = 0
    # The time of the newest customer record applied (its ``updated_at``, else its ingest's time), 0 when
    # none was: an older record is never applied over a newer one.
    record_us: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # Stamped on every write with one more than the largest so far, while the writer holds the table, so
    # revisions grow in commit order: a reader that remembers the largest it saw reads only what changed.
    revision: int = Field(default=0, index=True)


class ConsentChange(SQLModel, table=True):
    """A consent the customer changed through the engine (an unsubscribe link, a one-click POST), with
    its source and time. A customer record older than the change cannot give the consent back (see
    ``customers.upsert_customers``)."""

    __tablename__ = "consent_changes"
    __table_args__ = (Index("ix_consent_changes_customer", "customer_key", "channel"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_key: int
    channel: str = Field(description="email | sms | push")
    consent: bool
    source: str = Field(description="unsubscribe_link | one_click | ...")
    at_us: int


class EventType(SQLModel, table=True):
    __tablename__ = "event_types"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True)


class Event(SQLModel, table=True):
    """One event. ``event_key`` (see ``ingest._keys``) makes ingest idempotent: an event whose key is
    stored already is not stored again. Rows stored before keys existed have none (NULL)."""

    __tablename__ = "events"
    # Unique over the keys of events with their own id (negative keys) only: the keys derived from a file
    # and line are made unique by each source's last line done (``EventSource.lines_done``), so the index
    # costs nothing to the events without an id.
    __table_args__ = (
        Index(
            "ux_events_own_key",
            "event_key",
            unique=True,
            sqlite_where=text("event_key < 0"),
            postgresql_where=text("event_key < 0"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_key: int
    type_id: int
    ts_us: int
    properties: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    event_key: int | None = None


class EventSource(SQLModel, table=True):
    """A file (or named batch) events were ingested from, by the digest of its content: its ``id`` is
    the upper half of the keys of its events (see ``ingest._keys``)."""

    __tablename__ = "event_sources"

    id: int | None = Field(default=None, primary_key=True)
    digest: bytes = Field(sa_column=Column(LargeBinary, nullable=False, unique=True))
    first_us: int
    # The last line (row, position) of the source whose chunk is stored: every line up to it was stored
    # (or rejected) in a committed chunk, so an ingest of the same source skips those lines.
    lines_done: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class EventSourceReject(SQLModel, table=True):
    """A line of a source, at or before its ``lines_done``, that was rejected and is not stored: an ingest
    of the same source with other checks (a wider time range) may still store it."""

    __tablename__ = "event_source_rejects"

    source_id: int = Field(primary_key=True)
    line: int = Field(primary_key=True)


class JourneyVersion(SQLModel, table=True):
    """A journey file as it was when a version first ran; a changed file must declare a new version."""

    __tablename__ = "journey_versions"
    __table_args__ = (UniqueConstraint("journey_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    journey_id: str
    version: int
    digest: str
    source: str = Field(sa_column=Column(Text, nullable=False))
    # The shared metrics file the version read (its text), so an older version rebuilds as it ran.
    shared_metrics: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    registered_us: int


class JourneyInstance(SQLModel, table=True):
    """One customer's trip through one journey version (one entry).

    ``state`` is the step the instance is at (or how it finished), ``since_us`` when it reached that step,
    ``wake_at_us`` when the engine looks at it again. Journeys entered by an event keep the event's id, the
    value of its correlation key and its properties; ``data`` (JSON) holds those properties under
    ``entry`` and the properties of events that ended a ``wait_for`` under that step's id.
    """

    __tablename__ = "journey_instances"
    __table_args__ = (
        # Active instances only, by wake-up (store migration 0018): stepping an instance changes one entry,
        # and an instance that finishes leaves it.
        Index(
            "ix_instances_live",
            "journey_id",
            "version",
            "wake_at_us",
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
        Index("ix_instances_customer", "journey_id", "customer_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    journey_id: str
    version: int
    customer_key: int
    state: str
    status: str = Field(description="active | completed | exited | converted")
    holdout: bool
    entered_us: int
    since_us: int | None = Field(default=None, description="when the instance reached its current step")
    wake_at_us: int | None = None
    exited_us: int | None = None
    exit_reason: str | None = None
    entry_key: str | None = Field(default=None, description="event entry: the correlation key's value")
    entry_event_id: int | None = Field(default=None, description="event entry: the event that started it")
    data: str | None = Field(default=None, sa_column=Column(Text))
    # The values of the metrics and attributes the entry condition reads, at entry (compact JSON, a
    # bounded number of names; NULL for instances entered before they were recorded).
    entry_values: str | None = Field(default=None, sa_column=Column(Text))
    # When the instance passed its first send step (the tick's instant; held-out instances too, which send
    # nothing): where a goal ``from: first_send`` starts its window. NULL until then.
    first_send_us: int | None = None
    # PostgreSQL with several workers: the worker that claimed the instance for stepping and until when
    # (database time, microseconds) the claim holds; a claim whose worker died expires and is taken over.
    claimed_by: str | None = None
    lease_until_us: int | None = None


class JourneyFunnel(SQLModel, table=True):
    """The per-step funnel (``store._funnel``): how many instances of one journey version and arm took one
    transition, from ``source`` through ``trigger_name`` to ``dest``, added to as steps happen."""

    __tablename__ = "journey_funnel"

    journey_id: str = Field(primary_key=True)
    version: int = Field(primary_key=True)
    arm: str = Field(primary_key=True, description="treatment | holdout")
    source: str = Field(primary_key=True, description="a state, '' for an entry")
    trigger_name: str = Field(
        primary_key=True, description="next | yes | no | split-<n> | goal | entry | ..."
    )
    dest: str = Field(primary_key=True)
    n: int = 0


class JourneyMigration(SQLModel, table=True):
    """A ``migrate:`` entry applied: instances of ``from_version`` moved onto ``to_version`` once, at the
    first tick that ran ``to_version``; ``moved`` counts them."""

    __tablename__ = "journey_migrations"

    journey_id: str = Field(primary_key=True)
    to_version: int = Field(primary_key=True)
    from_version: int = Field(primary_key=True)
    applied_us: int
    moved: int


class EntryCursor(SQLModel, table=True):
    """How far a journey entered by an event has read the events table: every event of its type with an
    id up to ``last_event_id`` has been considered, except ``pending`` ids (JSON list), stamped after the
    tick that read them, which are considered again when their time comes."""

    __tablename__ = "entry_cursors"

    journey_id: str = Field(primary_key=True)
    last_event_id: int
    pending: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))


class SignalMember(SQLModel, table=True):
    """Customers for whom a journey's entry condition held at the last tick (entry fires on the edge)."""

    __tablename__ = "signal_members"

    journey_id: str = Field(primary_key=True)
    customer_key: int = Field(primary_key=True)
    since_us: int


class HoldoutAssignment(SQLModel, table=True):
    """The arm a customer was given for a journey, decided once at first entry."""

    __tablename__ = "holdout_assignments"

    journey_id: str = Field(primary_key=True)
    customer_key: int = Field(primary_key=True)
    arm: str = Field(description="treatment | holdout")
    bucket: float = Field(description="the hash bucket in [0, 1) that decided the arm")
    percent: float = Field(description="the holdout percent in force when assigned")
    assigned_us: int
    reason: str
    layer: str | None = Field(
        default=None, description="global | journey: the holdout layer that decided (NULL: journey)"
    )


class Message(SQLModel, table=True):
    """The send ledger: one row per (instance, step); the idempotency key makes a second send impossible."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_status", "status"),
        Index("ix_messages_customer", "customer_key", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True)
    journey_id: str
    version: int
    instance_id: int
    customer_key: int
    step: str
    channel: str
    recipient: str | None = None
    subject: str | None = Field(default=None, sa_column=Column(Text))
    body: str | None = Field(default=None, sa_column=Column(Text))
    html: str | None = Field(default=None, sa_column=Column(Text))
    title: str | None = None
    link: str | None = None
    status: str = Field(
        description="queued | sending | sent | suppressed | failed | refused | uncertain | cancelled"
    )
    reason: str | None = None
    created_us: int
    sent_us: int | None = None
    provider_id: str | None = None
    # Stepping writes a row with status, key and ids only; dispatch fills recipient and content when it
    # renders. A queued row with ``next_attempt_us`` in the future waits (a retry's backoff, quiet hours).
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    next_attempt_us: int | None = None
    transactional: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    # Set with status ``sending`` in a commit of its own just before the provider call (the instant the
    # row was handed over): a row still ``sending`` after its dispatcher stopped was in flight then.
    inflight_us: int | None = None
    # A message sent by ``orchestrator send-test``: no instance (``instance_id`` 0), recorded with its
    # outcome at once, never counted by caps, reports or the backlog.
    test: bool = Field(default=False, sa_column_kwargs={"server_default": false()})


class SendChoice(SQLModel, table=True):
    """What a send step that chooses for each customer (``at: best_time``, ``channel: best(...)``) chose for
    one visit of one instance, in both arms, written when the instance reached the step: the policy it got
    (``best_time`` or ``immediate``; ``best_channel`` or ``fixed:<channel>`` for the comparison share), the
    channel, when to send, the local hour of the week chosen and the counts behind the choice (JSON text).
    Reports compare conversions by policy; ``why`` shows the counts."""

    __tablename__ = "send_choices"
    __table_args__ = (
        Index("ix_send_choices_journey", "journey_id", "step"),
        Index("ix_send_choices_customer", "customer_key"),
    )

    instance_id: int = Field(primary_key=True)
    step: str = Field(primary_key=True)
    visit_us: int = Field(primary_key=True, description="when the instance reached the step")
    journey_id: str
    version: int
    customer_key: int
    policy: str = Field(description="best_time | immediate | best_channel | fixed:<channel>")
    channel: str = Field(description="the channel the message goes on")
    send_at_us: int
    hour_of_week: int | None = None  # local, 0 = Monday 00:00-01:00; None when sent at once
    detail: str = Field(sa_column=Column(Text, nullable=False))


class RetiredJourney(SQLModel, table=True):
    """A journey retired by ``orchestrator retire``: its queued messages were cancelled and its instances
    finished. It runs again only from a version above ``version``."""

    __tablename__ = "retired_journeys"

    journey_id: str = Field(primary_key=True)
    version: int = Field(description="the highest version registered when it was retired")
    retired_us: int
    cancelled: int = 0
    finished: int = 0


class Suppression(SQLModel, table=True):
    """An address no message may go to again on its channel (a hard bounce, an invalid number)."""

    __tablename__ = "suppressions"

    channel: str = Field(primary_key=True)
    address: str = Field(primary_key=True)
    reason: str
    code: str | None = None
    message_id: int | None = None
    created_us: int


class Conversion(SQLModel, table=True):
    """A journey goal reached within its window after entry, recorded the same way for both arms."""

    __tablename__ = "conversions"

    instance_id: int = Field(primary_key=True)
    journey_id: str = Field(index=True)
    version: int
    customer_key: int
    holdout: bool
    entered_us: int
    converted_us: int
    revenue: float = 0.0


class IngestBatch(SQLModel, table=True):
    __tablename__ = "ingest_batches"

    id: int | None = Field(default=None, primary_key=True)
    source: str
    kind: str
    accepted: int
    rejected: int
    # Valid events not stored again because their key was (a file ingested twice, a rerun).
    duplicates: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    started_us: int
    seconds: float


class TickLog(SQLModel, table=True):
    __tablename__ = "ticks"

    id: int | None = Field(default=None, primary_key=True)
    now_us: int
    seconds: float
    summary: str = Field(sa_column=Column(Text, nullable=False))


class JourneyHealth(SQLModel, table=True):
    """A journey whose part of a tick failed (``store._health``): the error, from when, and the latest tick
    that saw it. The row goes when the journey works again."""

    __tablename__ = "journey_health"

    journey_id: str = Field(primary_key=True)
    error: str = Field(sa_column=Column(Text, nullable=False))
    since_us: int
    last_us: int


class SavedBacktest(SQLModel, table=True):
    """A backtest's report kept with ``orchestrator backtest --save``: when, its parameters and the report
    (both JSON text), for the faces that list and show saved backtests."""

    __tablename__ = "backtest_reports"

    id: int | None = Field(default=None, primary_key=True)
    created_us: int
    parameters: str = Field(sa_column=Column(Text, nullable=False))
    report: str = Field(sa_column=Column(Text, nullable=False))


class PredictionFit(SQLModel, table=True):
    """A fit of the churn and lifetime-value models (``orchestrator predict fit --save``, or the daemon's
    schedule): when, on which purchase event and value property, to which day (included), and the
    parameters with what they were fitted on (JSON text)."""

    __tablename__ = "prediction_fits"

    id: int | None = Field(default=None, primary_key=True)
    fitted_us: int
    event: str = Field(sa_column=Column(Text, nullable=False))
    value: str = Field(sa_column=Column(Text, nullable=False))
    calibration_end_day: int  # days since 1970-01-01 (UTC)
    parameters: str = Field(sa_column=Column(Text, nullable=False))


class ReportSend(SQLModel, table=True):
    """A scheduled report of one period (the weekly report of one week), claimed by the process that sends
    it before it sends: its status (``sending``, ``sent``, ``failed``, ``uncertain``), the tries, the
    recipients it reached (JSON list), the last failure's cause and when it was sent. One row per
    report and period is what keeps it from going out twice."""

    __tablename__ = "report_sends"

    report: str = Field(sa_column=Column(Text, primary_key=True))
    period: str = Field(sa_column=Column(Text, primary_key=True))  # the week's Monday, local, ISO date
    due_us: int
    status: str = Field(sa_column=Column(Text, nullable=False))
    attempts: int = 0
    delivered: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    updated_us: int = 0
    sent_us: int | None = None


class PartitionLease(SQLModel, table=True):
    """One partition of the customers (``store._partitions``): the worker that owns it, until when (database
    time, microseconds) its lease holds, and how many times it changed owner (a fencing token)."""

    __tablename__ = "partition_leases"

    partition: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    owner: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    lease_until_us: int | None = None
    epoch: int = 0


class PartitionWorker(SQLModel, table=True):
    """A worker sharing the partitions and until when (database time) its last heartbeat counts it live."""

    __tablename__ = "partition_workers"

    worker: str = Field(sa_column=Column(Text, primary_key=True))
    expires_us: int


def _wide_integers() -> None:
    """Every integer column is 64-bit on PostgreSQL (instants in microseconds overflow its 32-bit
    INTEGER); SQLite keeps ``INTEGER``, whose primary keys are the row id."""
    for table in SQLModel.metadata.tables.values():
        for column in table.columns:
            if type(column.type) is Integer:
                column.type = BigInteger().with_variant(Integer(), "sqlite")


_wide_integers()
