"""``validate`` catches what would certainly fail later, or make a journey silently never fire: misspelled
metrics, events, properties and attributes (against the tracking plan, and with ``--db`` the store), a
changed journey whose version was not bumped, integers out of range, and templates that include missing
or outside files or use names the sandbox does not provide. Each at ``file:line:column``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.engine._workspace import load_workspace, validate_paths
from orchestrator.language import SpecError

JOURNEY = """\
id: browse
version: 1
metrics:
  browse_change: change(count(product_view, within=7d), count(product_view, within=28d, before=7d))
signal: browse_change >= 1 and consent_email
holdout: 10
steps:
  - id: bought
    wait_for: {event: purchase, match: {category: metrics.top}, timeout: 1d, then: exit}
  - send: {channel: email, subject: "Hi {{ customer.first_name }}", template: mail.txt}
goal: {event: purchase, within: 7d, revenue: amount}
"""

CATALOG = """\
events:
  product_view:
    properties: [category]
  add_to_cart:
    properties: [cart_id]
  purchase:
    description: an order was paid
    properties: [amount, cart_id, category]
attributes: [first_name, vip]
"""


def workspace(tmp_path: Path, journey: str, catalog: str | None = None, template: str = "Hi") -> Path:
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "mail.txt").write_text(template)
    (tmp_path / "j.yaml").write_text(journey.replace("metrics.top", "'shoes'"))
    if catalog is not None:
        (tmp_path / "events.yaml").write_text(catalog)
    return tmp_path / "j.yaml"


def problems(tmp_path: Path, journey: str, catalog: str | None = None, template: str = "Hi") -> list[str]:
    path = workspace(tmp_path, journey, catalog, template)
    _, found = validate_paths([path])
    return [str(p).replace(str(tmp_path) + "/", "") for p in found]


def test_a_clean_workspace_with_a_tracking_plan_validates(tmp_path: Path) -> None:
    assert problems(tmp_path, JOURNEY, CATALOG) == []


def test_a_misspelled_metric_is_an_error_not_an_attribute(tmp_path: Path) -> None:
    text = JOURNEY.replace("signal: browse_change", "signal: browse_chnage")
    expected = (
        "j.yaml:5:9: unknown name 'browse_chnage'; did you mean the metric 'browse_change'? (a customer "
        "attribute of this name must be listed under attributes: in events.yaml)"
    )
    assert problems(tmp_path, text) == [expected]
    # The engine loads plans through the same checks: the daemon refuses it too.
    with pytest.raises(SpecError, match="did you mean the metric 'browse_change'"):
        load_workspace([tmp_path / "j.yaml"])
    # A name far from every metric is a customer attribute, as before (without a tracking plan).
    assert problems(tmp_path, JOURNEY.replace("consent_email", "loyalty_points > 3")) == []


def test_names_not_in_the_tracking_plan_are_errors_with_a_suggestion(tmp_path: Path) -> None:
    text = (
        JOURNEY.replace("count(product_view, within=7d)", "count(add_to_crat, within=7d)")
        .replace("consent_email", "sum(purchase.amout, within=7d) > 0 and vpi")
        .replace("{event: purchase, match: {category:", "{event: purchse, match: {categroy:")
        .replace("revenue: amount", "revenue: amont")
    )
    assert problems(tmp_path, text, CATALOG) == [
        "j.yaml:4:31: unknown event 'add_to_crat': not in events.yaml; did you mean 'add_to_cart'?",
        "j.yaml:5:36: unknown property 'amout' of event 'purchase': not in events.yaml; did you mean "
        "'amount'?",
        "j.yaml:5:71: unknown name 'vpi': no metric, and no customer attribute in events.yaml; did you mean "
        "'vip'?",
        "j.yaml:9:23: unknown event 'purchse': not in events.yaml; did you mean 'purchase'?",
        "j.yaml:11:46: unknown property 'amont' of event 'purchase': not in events.yaml; did you mean "
        "'amount'?",
    ]


def test_events_and_session_properties_read_by_keyword_are_checked(tmp_path: Path) -> None:
    # sequence(not_followed_by=...) and sessions(without=...) name events; sessions() reads its by=
    # property (session_id by default) on events of any type.
    text = JOURNEY.replace(
        "consent_email",
        "sequence(product_view, add_to_cart, not_followed_by=purchse, for=7d, within=30d) "
        "and session_share(without=[product_view, add_to_crt], within=7d) > 0.5 and sessions(by=cart_di) > 1",
    )
    assert problems(tmp_path, text, CATALOG) == [
        "j.yaml:5:84: unknown event 'purchse': not in events.yaml; did you mean 'purchase'?",
        "j.yaml:5:154: unknown event 'add_to_crt': not in events.yaml; did you mean 'add_to_cart'?",
        "j.yaml:5:117: unknown property 'session_id': no event in events.yaml has it; list it under the "
        "properties of the events that carry it",
        "j.yaml:5:200: unknown property 'cart_di': no event in events.yaml has it; did you mean 'cart_id'?",
    ]
    fixed = (
        text.replace("purchse", "purchase")
        .replace("add_to_crt", "add_to_cart")
        .replace("cart_di)", "cart_id)")
    )
    assert (
        problems(tmp_path, fixed.replace("within=7d) > 0.5", "within=7d, by=cart_id) > 0.5"), CATALOG) == []
    )


def test_event_entry_key_and_match_properties_are_checked(tmp_path: Path) -> None:
    text = """\
id: carts
version: 1
entry: {event: add_to_cart, key: cart_idd}
holdout: 0
steps:
  - wait_for: {event: purchase, match: {cart_id: entry.cartid}, timeout: 4h, then: exit}
  - send: {channel: email, subject: "x", template: mail.txt}
"""
    assert problems(tmp_path, text, CATALOG) == [
        "j.yaml:3:34: unknown property 'cart_idd' of event 'add_to_cart': not in events.yaml; did you "
        "mean 'cart_id'?",
        "j.yaml:6:50: unknown property 'cartid' of event 'add_to_cart': not in events.yaml; did you mean "
        "'cart_id'?",
    ]


def test_template_reads_are_checked_against_the_tracking_plan(tmp_path: Path) -> None:
    text = """\
id: carts
version: 1
entry: {event: add_to_cart, key: cart_id}
holdout: 0
steps:
  - send: {channel: email, subject: "{{ entry.cart_ld }}", template: mail.txt}
"""
    found = problems(tmp_path, text, CATALOG, template="Hi {{ customer.first_name }}\n{{ customer.nick }}")
    assert found == [
        "j.yaml:6:70: template 'mail.txt' line 2: customer.nick: no customer attribute 'nick' in events.yaml",
        "j.yaml:6:37: the inline template line 1: entry.cart_ld: event 'add_to_cart' has no property "
        "'cart_ld' in events.yaml; did you mean 'cart_id'?",
    ]


def test_policy_exclusions_read_attributes_the_tracking_plan_lists(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text("exclusions:\n  - name: fragile\n    when: vulnerabel == true\n")
    assert problems(tmp_path, JOURNEY, CATALOG.replace("vip]", "vip, vulnerable]")) == [
        "policy.yaml:3:11: exclusions[0].when: no customer attribute 'vulnerabel' in events.yaml; "
        "did you mean 'vulnerable'?"
    ]


def test_the_tracking_plan_is_checked_strictly(tmp_path: Path) -> None:
    bad = CATALOG.replace("    description:", "    descripton:").replace(
        "[amount, cart_id,", "[amount, amount,"
    )
    assert problems(tmp_path, JOURNEY, bad) == [
        "events.yaml:7:5: unknown key 'descripton'; did you mean 'description'?",
    ]
    assert problems(tmp_path, JOURNEY, CATALOG.replace("[amount, cart_id,", "[amount, amount,")) == [
        "events.yaml:8:26: property 'amount' is listed twice",
    ]
    assert problems(tmp_path, JOURNEY, "events: [a, b]\n") == [
        "events.yaml:1:9: events: expected a mapping of event names, e.g. purchase: {properties: [amount]}"
    ]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("version: 1\n", "version: 1\npriority: 99999999999999999999\n", "j.yaml:3:11: the whole number"),
        (
            "version: 1\n",
            "version: 1\npriority: 9999999999\n",
            "j.yaml:3:11: priority: int 9999999999 is out",
        ),
        ("version: 1\n", "version: 2147483648\n", "j.yaml:2:10: version: int 2147483648 is out of range"),
        ("holdout: 10", "holdout: .nan", "j.yaml:6:10: holdout: float nan is out of range"),
        ("timeout: 1d", "timeout: 99999999999d", "j.yaml:9:70: steps[0].wait_for.timeout: '99999999999d' is"),
        ("within=7d)", "within=999999999w)", "j.yaml:4:52: 999999999w is longer than 100 years"),
    ],
)
def test_integers_and_durations_out_of_range(tmp_path: Path, old: str, new: str, expected: str) -> None:
    found = problems(tmp_path, JOURNEY.replace(old, new, 1))
    assert len(found) == 1 and found[0].startswith(expected), found


def test_a_split_percent_must_be_a_number_from_0_to_100(tmp_path: Path) -> None:
    text = JOURNEY.replace("  - id: bought\n", "  - split: {bought: .nan, next_one: 100}\n  - id: bought\n")
    text = text.replace("  - send:", "  - id: next_one\n    send:")
    assert any(
        "every split percent must be above zero and at most 100" in p for p in problems(tmp_path, text)
    )


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{% include 'parts/missing.txt' %}", "includes 'parts/missing.txt', which is not found"),
        ("{% include '../../etc/passwd' %}", "includes '../../etc/passwd', outside the template root"),
        ("{% include '/etc/passwd' %}", "includes '/etc/passwd', outside the template root"),
        ("{% extends customer.layout %}", "extends a name computed when rendering"),
        ("{% from 'nope.txt' import f %}", "imports 'nope.txt', which is not found"),
        ("{{ lipsum(2) }}", "line 1: undefined variable 'lipsum'"),
        ("{{ customer.first_name | random }}", "no filter named 'random'"),
        ("{{ customer.first_name | uper }}", "no filter named 'uper'; did you mean 'upper'?"),
        ("{% if customer.vip is trueish %}x{% endif %}", "no test named 'trueish'"),
        ("{% include 'parts/footer.txt' %}", "template 'parts/footer.txt' (included by 'mail.txt') line 2: "),
    ],
)
def test_templates_that_will_fail_are_errors(tmp_path: Path, template: str, expected: str) -> None:
    (tmp_path / "templates" / "parts").mkdir(parents=True)
    (tmp_path / "templates" / "parts" / "footer.txt").write_text("ok\n{{ unsubscribe_link }}\n")
    found = problems(tmp_path, JOURNEY, template=template)
    assert len(found) == 1 and found[0].startswith("j.yaml:10:"), found
    assert expected in found[0], found


def test_sandbox_globals_and_good_includes_pass(tmp_path: Path) -> None:
    (tmp_path / "templates" / "parts").mkdir(parents=True)
    (tmp_path / "templates" / "parts" / "footer.txt").write_text("Bye {{ customer.first_name }}\n")
    template = (
        "{% for i in range(2) %}{{ i }}{% endfor %}{% set ns = namespace(n=1) %}{{ ns.n }}"
        "{% set c = cycler('a', 'b') %}{{ c.next() }}{{ dict(a=1).a }}{% include 'parts/footer.txt' %}"
        "{% include 'parts/optional.txt' ignore missing %}"
    )
    assert problems(tmp_path, JOURNEY, template=template) == []


# ---------------------------------------------------------------------------------------------- --db


def _store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    events = [
        {
            "customer_id": "1",
            "event": "product_view",
            "ts": "2024-03-01T10:00:00Z",
            "properties": {"category": "a"},
        },
        {
            "customer_id": "1",
            "event": "purchase",
            "ts": "2024-03-01T11:00:00Z",
            "properties": {"amount": 3, "category": "a"},
        },
    ]
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (tmp_path / "customers.jsonl").write_text(json.dumps({"customer_id": "1", "first_name": "Ann"}) + "\n")
    assert main(["ingest", "--db", url, "--kind", "events", str(tmp_path / "events.jsonl")]) == 0
    assert main(["ingest", "--db", url, "--kind", "customers", str(tmp_path / "customers.jsonl")]) == 0
    return url


def test_validate_db_refuses_names_the_store_has_never_seen(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    url = _store(tmp_path)
    text = JOURNEY.replace("count(product_view, within=7d)", "count(product_veiw, within=7d)").replace(
        "consent_email", "sum(purchase.amout, within=7d) > 0 and frist_name == 'x'"
    )
    path = workspace(ws, text)
    assert main(["validate", str(path)]) == 0  # without the store, nothing says these names cannot exist
    capsys.readouterr()
    assert main(["validate", str(path), "--db", url]) == 1
    err = capsys.readouterr().err.replace(str(ws) + "/", "")
    assert "j.yaml:4:31: unknown event 'product_veiw': not in the store; did you mean 'product_view'?" in err
    assert "j.yaml:5:36: unknown property 'amout' of event 'purchase': not in the store; did you mean " in err
    assert (
        "j.yaml:5:71: unknown name 'frist_name': no metric, and no customer attribute in the store; " in err
    )
    # A name the tracking plan declares counts as known even before any data carries it.
    (ws / "events.yaml").write_text(
        CATALOG.replace("  add_to_cart:", "  product_veiw:\n  add_to_cart:")
        .replace("[amount, cart_id, category]", "[amount, amout, category]")
        .replace("[first_name, vip]", "[first_name, frist_name]")
    )
    assert main(["validate", str(path), "--db", url]) == 0, capsys.readouterr().err


def test_validate_db_refuses_a_changed_journey_whose_version_was_not_bumped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    url = _store(tmp_path)
    path = workspace(ws, JOURNEY)
    run = ["run", "--once", "--now", "2024-03-02T00:00:00Z", "--db", url, "--outbox", str(tmp_path / "out")]
    assert main([*run, "--journeys", str(path)]) == 0
    assert main(["validate", str(path), "--db", url]) == 0
    path.write_text(path.read_text().replace("holdout: 10", "holdout: 20"))
    capsys.readouterr()
    assert main(["validate", str(path), "--db", url]) == 1
    err = capsys.readouterr().err
    assert f"{path}:2:10: journey 'browse' version 1 has changed since it first ran; bump it to 2" in err
    path.write_text(path.read_text().replace("version: 1", "version: 2"))
    assert main(["validate", str(path), "--db", url]) == 0


def test_the_example_tracking_plan_lists_every_event_of_the_seven_journeys(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2] / "examples" / "journeys"
    files, found = validate_paths([root])
    assert (root / "events.yaml").is_file() and len(files) == 11 and found == []
    shutil.copytree(root, tmp_path / "journeys")
    cart = tmp_path / "journeys" / "cart_abandonment.yaml"
    cart.write_text(cart.read_text().replace("event: add_to_cart ", "event: add_to_crat "))
    _, found = validate_paths([tmp_path / "journeys"])
    assert [str(p).replace(str(tmp_path) + "/", "") for p in found] == [
        "journeys/cart_abandonment.yaml:9:10: unknown event 'add_to_crat': not in journeys/events.yaml; "
        "did you mean 'add_to_cart'?"
    ]


def test_a_misspelled_shared_metric_is_reported_in_metrics_yaml(tmp_path: Path) -> None:
    (tmp_path / "metrics.yaml").write_text(
        "metrics:\n  sessions_30d: count(session_start, within=30d)\n  busy: sesions_30d > 8\n"
    )
    text = JOURNEY.replace("signal: browse_change >= 1", "signal: busy and sessions_3d > 1")
    assert problems(tmp_path, text) == [
        "j.yaml:5:18: unknown name 'sessions_3d'; did you mean the metric 'sessions_30d'? (a customer "
        "attribute of this name must be listed under attributes: in events.yaml)",
        "metrics.yaml:3:9: unknown name 'sesions_30d'; did you mean the metric 'sessions_30d'? (a customer "
        "attribute of this name must be listed under attributes: in events.yaml)",
    ]
