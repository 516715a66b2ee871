"""The weekly report the daemon emails: when it falls due (worked out by hand, in a zone with daylight
saving), sending it once through a real SMTP server (aiosmtpd on 127.0.0.1) whatever the failures and
restarts, and a real daemon process that sends exactly one email per week and recipient across a restart,
and, when the mail server refuses for a while, says so in one line and sends once it takes mail again."""

from __future__ import annotations

import email
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from channel_servers import LocalSmtpServer, SmtpRecorder
from test_daemon import Daemon, drop_customers, workspace

from orchestrator.channels import ChannelRouter, EmailSettings, SmtpAdapter, SmtpSettings
from orchestrator.clock import to_us
from orchestrator.engine import WeeklySchedule, due_instant, send_weekly_report
from orchestrator.store import Store, claim_report_send, report_send


def us(text: str) -> int:
    return to_us(datetime.fromisoformat(text).astimezone(UTC))


@dataclass(frozen=True)
class Mail:
    subject: str
    text: str
    html: str


def schedule(to: tuple[str, ...] = ("ana@example.org", "ops@example.org"), **kw: object) -> WeeklySchedule:
    built: list[int] = []

    def build(_store: Store, now_us: int) -> Mail:
        built.append(now_us)
        return Mail("Journeys this week", "the text part\n", "<p>the <b>html</b> part</p>")

    fields: dict[str, object] = {"weekday": 0, "seconds_of_day": 8 * 3600, "timezone": "Europe/Paris"}
    fields.update(kw)
    return WeeklySchedule(to=to, build=build, **fields)  # type: ignore[arg-type]


def test_the_week_falls_due_at_the_local_day_and_hour() -> None:
    paris = schedule()  # Mondays at 08:00 in Paris: 06:00 UTC in summer, 07:00 UTC in winter
    assert due_instant(paris, us("2024-05-01T09:00:00+00:00")) == (
        "2024-04-29",
        us("2024-04-29T06:00:00+00:00"),
    )
    assert due_instant(paris, us("2024-04-29T06:00:00+00:00")) == (
        "2024-04-29",
        us("2024-04-29T06:00:00+00:00"),
    )
    assert due_instant(paris, us("2024-04-29T05:59:59+00:00")) == (
        "2024-04-22",
        us("2024-04-22T06:00:00+00:00"),
    )
    assert due_instant(paris, us("2024-01-08T07:00:00+00:00")) == (
        "2024-01-08",
        us("2024-01-08T07:00:00+00:00"),
    )
    # Sunday 02:30 does not exist on 2024-03-31 in Paris (02:00 -> 03:00): due at the jump, 01:00 UTC.
    sunday = schedule(weekday=6, seconds_of_day=2 * 3600 + 1800)
    assert due_instant(sunday, us("2024-03-31T12:00:00+00:00")) == (
        "2024-03-31",
        us("2024-03-31T01:00:00+00:00"),
    )
    # The local day, not the UTC one: Monday 00:30 in Tokyo is Sunday 15:30 UTC.
    tokyo = schedule(weekday=0, seconds_of_day=1800, timezone="Asia/Tokyo")
    assert due_instant(tokyo, us("2024-04-28T15:30:00+00:00")) == (
        "2024-04-29",
        us("2024-04-28T15:30:00+00:00"),
    )


@pytest.fixture
def smtp() -> Iterator[LocalSmtpServer]:
    with LocalSmtpServer(SmtpRecorder()) as server:
        yield server


def router_to(server: LocalSmtpServer) -> ChannelRouter:
    settings = SmtpSettings("127.0.0.1", server.port, security="none", timeout_s=3.0)
    sender = EmailSettings(sender="Shop <reports@shop.example>", message_id_domain="shop.example")
    return ChannelRouter([SmtpAdapter(settings, sender)])


def parse(data: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def received(server: LocalSmtpServer) -> list[tuple[str, str]]:
    return [(m.rcpt_tos[0], str(parse(m.content)["Message-ID"])) for m in server.handler.messages]


NOW = us("2024-05-01T09:00:00+00:00")


def test_the_week_is_sent_once_to_each_recipient(store: Store, smtp: LocalSmtpServer) -> None:
    plan = schedule()
    first = send_weekly_report(store, router_to(smtp), plan, NOW)
    assert (first.week, first.status, first.delivered) == ("2024-04-29", "sent", plan.to)
    [to_ana, to_ops] = smtp.handler.messages
    assert (to_ana.rcpt_tos, to_ops.rcpt_tos) == (["ana@example.org"], ["ops@example.org"])
    mail = parse(to_ana.content)
    assert mail["Subject"] == "Journeys this week" and "List-Unsubscribe" not in mail  # the team's own list
    text, html = (str(part.get_content()) for part in mail.iter_parts())
    assert (text.replace("\r\n", "\n"), html.strip()) == ("the text part\n", "<p>the <b>html</b> part</p>")
    # Later ticks of the same week, and a new router (a restart): nothing more.
    assert send_weekly_report(store, router_to(smtp), plan, NOW + 3600 * 10**6).status == "done"
    assert len(smtp.handler.messages) == 2
    with store.connect() as conn:
        row = report_send(conn, "weekly", "2024-04-29")
    assert row is not None and (row.status, row.attempts, row.delivered, row.sent_us) == (
        "sent",
        1,
        plan.to,
        NOW,
    )
    # The next week is its own.
    assert (
        send_weekly_report(store, router_to(smtp), plan, us("2024-05-06T06:00:00+00:00")).week == "2024-05-06"
    )
    assert Counter(to for to, _ in received(smtp)) == {"ana@example.org": 2, "ops@example.org": 2}


def test_a_refusing_server_fails_the_week_and_a_later_try_sends_the_rest(
    store: Store, smtp: LocalSmtpServer
) -> None:
    plan = schedule()
    smtp.handler.rcpt_replies["ops@example.org"] = "451 4.3.0 mailbox busy, try later"
    failed = send_weekly_report(store, router_to(smtp), plan, NOW)
    assert failed.status == "failed" and failed.delivered == ("ana@example.org",)
    assert failed.detail.startswith("1 of 2 recipient(s) not reached: ") and "mailbox busy" in failed.detail
    assert "@" not in failed.detail  # the log line names no address
    with store.connect() as conn:
        row = report_send(conn, "weekly", "2024-04-29")
    assert row is not None and row.status == "failed" and row.error == failed.detail
    smtp.handler.rcpt_replies.clear()
    later = send_weekly_report(store, router_to(smtp), plan, NOW + 600 * 10**6)
    assert later.status == "sent" and later.attempt == 2 and set(later.delivered) == set(plan.to)
    assert Counter(to for to, _ in received(smtp)) == {"ana@example.org": 1, "ops@example.org": 1}


def test_a_week_left_sending_by_a_stopped_process(store: Store, smtp: LocalSmtpServer) -> None:
    plan = schedule()
    with store.begin() as conn:  # a process claimed the week, then died before recording anything
        assert (
            claim_report_send(conn, "weekly", "2024-04-29", us("2024-04-29T06:00:00+00:00"), NOW) is not None
        )
    # At most once: recorded uncertain, nothing sent, ever.
    uncertain = send_weekly_report(store, router_to(smtp), plan, NOW + 1, at_most_once=True)
    assert uncertain.status == "uncertain" and smtp.handler.messages == []
    assert send_weekly_report(store, router_to(smtp), plan, NOW + 2).status == "done"
    # At least once (the default), on another week: the recipients not recorded are sent to, with the keys
    # (and so the Message-IDs) the first process would have used.
    week = us("2024-05-06T06:00:00+00:00")
    with store.begin() as conn:
        assert claim_report_send(conn, "weekly", "2024-05-06", week, week) is not None
    resumed = send_weekly_report(store, router_to(smtp), plan, week + 1)
    assert resumed.status == "sent" and resumed.attempt == 2
    assert [to for to, _ in received(smtp)] == list(plan.to)


# ------------------------------------------------------------------------------------------ a real daemon
# The daemon of test_daemon (simulated clock from Wednesday 2024-05-01 09:00 UTC, a tick every 0.2 s), with
# an orchestrator.yaml that sends email through a local SMTP server and declares the weekly report.

CONFIG = """\
sender:
  from: "Shop <shop@shop.example>"
channels:
  email:
    provider: smtp
    host: 127.0.0.1
    port: {port}
    security: none
    timeout: 3s
reports:
  weekly:
    to: [ana@shop.example, ops@shop.example]
    day: monday
    at: "08:00"
    timezone: Europe/Paris
    subject: "Journeys this week"
"""
TEAM = ("ana@shop.example", "ops@shop.example")


def reports(server: LocalSmtpServer) -> Counter[tuple[str, str]]:
    """(recipient, week's date in the message's key) of each weekly report the server took."""
    found: Counter[tuple[str, str]] = Counter()
    for message in server.handler.messages:
        mail = parse(message.content)
        if mail["Subject"] == "Journeys this week":
            [week] = re.findall(r"report-weekly-(\d{4}-\d\d-\d\d)-", str(mail["X-Idempotency-Key"]))
            found[(message.rcpt_tos[0], week)] += 1
    return found


def weeks_sent(server: LocalSmtpServer) -> set[str]:
    return {week for _to, week in reports(server)}


def test_the_daemon_sends_one_email_per_week_across_a_restart(tmp_path: Path, smtp: LocalSmtpServer) -> None:
    workspace(tmp_path)
    (tmp_path / "orchestrator.yaml").write_text(CONFIG.format(port=smtp.port))
    drop_customers(tmp_path, "first", 0, 3)
    daemon = Daemon(tmp_path, "--simulated-step", "1d")  # a simulated day per tick
    try:
        daemon.wait_for("two weeks' reports", lambda: len(weeks_sent(smtp)) >= 2)
    finally:
        first_log = daemon.stop()
    daemon = Daemon(tmp_path, "--simulated-step", "1d")  # resumes a day after the last tick
    try:
        seen = len(weeks_sent(smtp))
        daemon.wait_for("another week's report", lambda: len(weeks_sent(smtp)) > seen)
    finally:
        log = first_log + daemon.stop()
    found = reports(smtp)
    weeks = sorted(weeks_sent(smtp))
    # Wednesday 2024-05-01: the report of Monday 04-29 is due already; then one every Monday.
    assert weeks[:3] == ["2024-04-29", "2024-05-06", "2024-05-13"]
    assert found == {(to, week): 1 for to in TEAM for week in weeks}  # once per week and recipient
    assert len(re.findall(r"weekly report of the week of \S+ sent to 2 recipient", log)) == len(weeks)
    # The journey's own email went out through the same server; the report lists the journey.
    welcome = [m for m in smtp.handler.messages if parse(m.content)["Subject"] == "Hello"]
    assert len(welcome) == 3
    html = next(
        str(part.get_content())
        for m in smtp.handler.messages
        if parse(m.content)["Subject"] == "Journeys this week"
        for part in parse(m.content).iter_parts()
        if part.get_content_type() == "text/html"
    )
    assert "welcome" in html and "Every journey side by side" in html and "Engagement" in html
    assert "<svg" not in html and 'src="http' not in html and "<script" not in html and "<link" not in html


def test_a_refusing_mail_server_is_one_line_a_try_and_the_week_is_sent_once(
    tmp_path: Path, smtp: LocalSmtpServer
) -> None:
    workspace(tmp_path)
    (tmp_path / "orchestrator.yaml").write_text(CONFIG.format(port=smtp.port))
    smtp.handler.data_reply = "451 4.3.0 local problem, try again later"
    daemon = Daemon(tmp_path)  # an hour per tick: the week lasts 168 ticks
    try:
        daemon.wait_for(
            "a failed try", lambda: bool(daemon.lines("weekly report of the week of 2024-04-29 not"))
        )
        tries = len(daemon.lines("not sent (try"))
        smtp.handler.data_reply = None
        daemon.wait_for("the week's report", lambda: weeks_sent(smtp) == {"2024-04-29"})
        seen = daemon.ticks()
        daemon.wait_for("three more ticks", lambda: daemon.ticks() >= seen + 3)
    finally:
        log = daemon.stop()
    assert reports(smtp) == {(to, "2024-04-29"): 1 for to in TEAM}
    failures = [line for line in log.splitlines() if "not sent (try" in line]
    assert len(failures) >= tries >= 1
    assert all("2 of 2 recipient(s) not reached: " in line and "local problem" in line for line in failures)
    assert "Traceback" not in log and "a later tick tries again" in failures[0]
    [sent] = [line for line in log.splitlines() if "weekly report of the week of 2024-04-29 sent" in line]
    assert f"attempt={len(failures) + 1}" in sent
