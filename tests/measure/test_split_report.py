"""Per split arm and per message in the journey report, on a real engine run: a 50/50 split to two send
steps with different templates, where customers sent arm B's message convert more. The report's arm of
every entry is the arm the engine sent it down (the ledger's step per instance; held-out entries, which
get no message, through the funnel's counts), the A/B lift has the right sign and its counts equal a hand
count, and the per-message figures equal the ledger's and the tracking records'. Also the faces: text,
JSON and HTML through ``orchestrator report``."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from orchestrator.cli import main
from orchestrator.clock import to_us
from orchestrator.holdout import split_arms
from orchestrator.ingest import record_click, record_open, unsubscribe
from orchestrator.measure import journey_report
from orchestrator.testing import World, at, customer, event

pytestmark = pytest.mark.backends("sqlite", "postgres")

START = at("2024-05-06T00:00:00Z")
JOURNEY = """\
id: offers
version: 1
signal: count(signup, within=1d) > 0
holdout: 20
steps:
  - id: pick
    split: {offer_a: 50, offer_b: 50}
  - id: offer_a
    send: {channel: email, subject: "Offer A", template: a.txt}
  - exit: sent_a
  - id: offer_b
    send: {channel: email, subject: "Offer B", template: b.txt}
goal: {event: purchase, within: 3d, revenue: amount}
"""
N = 400


def _run(world: World) -> dict[int, str]:
    """Run the journey over N sign-ups; each tick, the new entries get their purchases (half of arm B's
    recipients, a tenth of arm A's and of the held-out entries) twelve hours on. Returns the ledger's step
    per instance."""
    world.write_files({"journeys/offers.yaml": JOURNEY, "templates/a.txt": "A", "templates/b.txt": "B"})
    world.clock.set(START)
    ids = [f"c{i:03d}" for i in range(N)]
    world.add_customers(*(customer(c) for c in ids))
    world.add_events(*(event(c, "signup", START + timedelta(minutes=5 * i)) for i, c in enumerate(ids)))
    customer_of = dict(world.rows("SELECT key, id FROM customers"))
    seen: set[int] = set()
    end_of_entries = START + timedelta(minutes=5 * N + 60)
    while world.clock.now() <= end_of_entries:
        world.tick()
        steps = dict(world.rows("SELECT instance_id, step FROM messages WHERE journey_id = 'offers'"))
        fresh = [
            r
            for r in world.rows("SELECT id, customer_key, holdout FROM journey_instances")
            if r[0] not in seen
        ]
        buys = []
        for instance_id, key, _held in fresh:
            seen.add(instance_id)
            cid = customer_of[key]
            share = 5 if steps.get(instance_id) == "offer_b" else 1
            if int(cid[1:]) % 10 < share:
                buys.append(event(cid, "purchase", world.clock.now() + timedelta(hours=12), amount=20.0))
        if buys:
            world.add_events(*buys)
        world.advance("1h")
    world.run_for("4d", step="6h")
    return dict(world.rows("SELECT instance_id, step FROM messages WHERE journey_id = 'offers'"))


def test_split_arms_and_messages_match_the_engine(world: World) -> None:
    ledger_step = _run(world)
    instances = world.rows(
        "SELECT i.id, c.id, i.holdout, i.entered_us FROM journey_instances i "
        "JOIN customers c ON c.key = i.customer_key ORDER BY i.id"
    )
    assert len(instances) == N
    # Tracking: opens, clicks and opt-outs through the links of a few messages.
    sent = world.rows(
        "SELECT id, step, customer_key, sent_us FROM messages WHERE status = 'sent' ORDER BY id"
    )
    now = to_us(world.clock.now())
    a_sent = [r for r in sent if r[1] == "offer_a"]
    b_sent = [r for r in sent if r[1] == "offer_b"]
    for message_id, *_ in a_sent[:7]:
        assert record_open(world.store, message_id, a_sent[0][3] + 1_000_000)
    for message_id, *_ in b_sent[:11]:
        assert record_open(world.store, message_id, b_sent[0][3] + 1_000_000)
        assert record_open(world.store, message_id, b_sent[0][3] + 900_000_000)  # opened again later
    for message_id, *_ in b_sent[:4]:
        assert record_click(world.store, message_id, "https://shop.example/b", b_sent[0][3] + 2_000_000)
    customer_of = {key: cid for key, cid in world.rows("SELECT key, id FROM customers")}
    # An opt-out an hour after the send counts; one long after the window does not.
    unsubscribe(
        world.store, customer_of[a_sent[0][2]], "email", "unsubscribe_link", a_sent[0][3] + 3_600_000_000
    )
    unsubscribe(world.store, customer_of[a_sent[1][2]], "email", "one_click", now)

    report = journey_report(world.store, "offers")
    assert report.matured == N  # every window has closed
    (split,) = report.splits
    assert split.step == "pick" and [a.target for a in split.arms] == ["offer_a", "offer_b"]
    assert [a.template for a in split.arms] == ["a.txt", "b.txt"]

    # The report's arm of every entry is the arm the engine sent it down.
    targets = [a.target for a in split.arms]
    by_instance = dict(zip(split.instance_id.tolist(), split.arm.tolist(), strict=True))
    assert len(by_instance) == N and min(by_instance.values()) >= 0
    held = {row[0]: bool(row[2]) for row in instances}
    treated_ids = [i for i in by_instance if not held[i]]
    assert treated_ids and all(targets[by_instance[i]] == ledger_step[i] for i in treated_ids)
    assert not any(i in ledger_step for i in by_instance if held[i])  # held out: no message at all
    # Held-out entries: the engine's counts per arm (the funnel) equal the report's assignment.
    for index, arm in enumerate(split.arms):
        in_arm = [i for i, a in by_instance.items() if a == index]
        assert arm.treated.n == sum(not held[i] for i in in_arm)
        assert arm.holdout.n == sum(held[i] for i in in_arm) > 0
        assert arm.reached == (arm.treated.n, arm.holdout.n)
    # ... and the one shared function, called here on the stored rows, agrees too.
    recomputed = split_arms("offers", "pick", [r[1] for r in instances], [r[3] for r in instances], [50, 50])
    assert [by_instance[r[0]] for r in instances] == recomputed.tolist()

    # The A/B within the treated arm against a hand count.
    converted = {r[0] for r in world.rows("SELECT instance_id FROM conversions")}
    counts = {t: [0, 0] for t in targets}
    for i in treated_ids:
        counts[ledger_step[i]][0] += 1
        counts[ledger_step[i]][1] += i in converted
    assert split.ab is not None and split.ab.control == "offer_a"
    ab = split.ab_comparison("offer_b")
    assert ab is not None and ab.lift is not None
    rate_a, rate_b = (counts[t][1] / counts[t][0] for t in targets)
    assert ab.lift.absolute == pytest.approx(rate_b - rate_a) and ab.lift.absolute > 0.2
    assert ab.lift.absolute_ci.low > 0 and ab.lift.p_value is not None and ab.lift.p_value < 0.001
    assert ab.verdict is not None and ab.verdict.call == "ship"
    arms_ab = split.ab.metric("conversion")
    assert [(a.name, a.n, int(a.total)) for a in arms_ab.arms] == [(t, *counts[t]) for t in targets]
    revenue_ab = split.ab_comparison("offer_b", "revenue")
    assert revenue_ab is not None and revenue_ab.lift is not None
    assert revenue_ab.lift.absolute == pytest.approx(20.0 * (rate_b - rate_a))
    # Each arm against its holdout slice: about 40 held-out entries per arm, so the call waits.
    b_vs_holdout = split.arms[1].comparison()
    assert b_vs_holdout is not None and b_vs_holdout.lift is not None and b_vs_holdout.lift.absolute > 0
    assert b_vs_holdout.verdict is not None and b_vs_holdout.verdict.call == "not enough data yet"
    assert any("small sample" in w for w in b_vs_holdout.verdict.warnings)

    # Per message: the ledger's counts, the tracking records, conversions after the send.
    stats = {m.step: m for m in report.messages}
    assert list(stats) == ["offer_a", "offer_b"]
    ledger_sent = Counter(r[1] for r in sent)
    assert {s: stats[s].sent for s in stats} == dict(ledger_sent)
    assert stats["offer_a"].template == "a.txt" and stats["offer_a"].channels == ("email",)
    assert (stats["offer_a"].opened, stats["offer_b"].opened) == (7, 11)
    assert (stats["offer_a"].clicked, stats["offer_b"].clicked) == (0, 4)
    assert (stats["offer_a"].unsubscribed, stats["offer_b"].unsubscribed) == (1, 0)
    assert stats["offer_a"].failed == stats["offer_a"].suppressed == stats["offer_a"].queued == 0
    for step in targets:
        assert stats[step].matured == ledger_sent[step]
        assert stats[step].converted == counts[step][1]

    data = json.loads(json.dumps(report.to_dict()))
    assert [s["step"] for s in data["splits"]] == ["pick"]
    assert data["splits"][0]["arms"][1]["assigned"] == {
        "treatment": split.arms[1].treated.n,
        "holdout": split.arms[1].holdout.n,
    }
    assert [m["sent"] for m in data["messages"]] == [ledger_sent["offer_a"], ledger_sent["offer_b"]]


def test_report_shows_split_arms_and_messages(
    world: World, store_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ledger_step = _run(world)
    sent = Counter(ledger_step.values())
    assert main(["report", "offers", "--db", store_url]) == 0
    out = capsys.readouterr().out
    assert "Split arms at step pick" in out and "A/B within the treated arm" in out
    assert "offer_b vs offer_a" in out and "b.txt" in out
    assert "Messages" in out
    table = out.split("Messages (", 1)[1].split("\n\n", 1)[0].splitlines()
    rows = {cells[0]: cells for cells in (line.split() for line in table[2:])}
    assert table[1].split()[:4] == ["step", "channel", "template", "sent"] and len(rows) == 2
    assert rows["offer_a"][3] == str(sent["offer_a"]) and rows["offer_b"][3] == str(sent["offer_b"])

    assert main(["report", "offers", "--db", store_url, "--currency", "EUR"]) == 0
    split_text = capsys.readouterr().out.split("Split arms at step pick", 1)[1].split("Messages (", 1)[0]
    assert "revenue per entry: offer_a €" in split_text and "offer_b vs offer_a: +€" in split_text

    assert main(["report", "offers", "--db", store_url, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["splits"][0]["ab"]["control"] == "offer_a"
    assert {m["step"]: m["sent"] for m in data["messages"]} == dict(sent)

    # The export holds what it takes to recompute every arm with the engine's function.
    export = tmp_path / "entries.parquet"
    assert main(["report", "offers", "--db", store_url, "--format", "json", "--export", str(export)]) == 0
    arms = {a["target"]: a["assigned"] for a in json.loads(capsys.readouterr().out)["splits"][0]["arms"]}
    table = pq.read_table(export).to_pydict()
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    entered = [(t - epoch) // timedelta(microseconds=1) for t in table["entered_at"]]
    recomputed = split_arms("offers", "pick", table["customer_id"], entered, [50, 50]).tolist()
    for index, target in enumerate(["offer_a", "offer_b"]):
        rows = [
            arm
            for arm, r, c in zip(recomputed, table["arm"], table["counted"], strict=True)
            if c and arm == index
        ]
        held = [
            r
            for arm, r, c in zip(recomputed, table["arm"], table["counted"], strict=True)
            if c and arm == index and r == "holdout"
        ]
        assert arms[target] == {"treatment": len(rows) - len(held), "holdout": len(held)}

    page = tmp_path / "offers.html"
    assert main(["report", "offers", "--db", store_url, "--format", "html", "--output", str(page)]) == 0
    html = page.read_text()
    assert "Split arms at step pick" in html and "<h2>Messages</h2>" in html
    assert (
        "each arm against offer_a" in html and "offer_b vs offer_a" in html and "offer_a vs holdout" in html
    )
    messages = html.split("<h2>Messages</h2>", 1)[1].split("</table>", 1)[0]
    assert f"<td>offer_a</td><td>email</td><td>a.txt</td><td>{sent['offer_a']}</td>" in messages

    # Before any goal window has closed the page still lists the messages sent so far.
    early = (START + timedelta(hours=6)).isoformat()
    assert main(["report", "offers", "--db", store_url, "--format", "html", "--now", early]) == 0
    html = capsys.readouterr().out
    assert "No entry has completed its goal window yet." in html and "<h2>Messages</h2>" in html
