"""The whole program's lift in ``orchestrator report --all``: the customers of the global holdout against
everyone else, on a real engine run with a 20% global holdout. Every count is checked against a hand count
from the store's rows, with the global layer's hash recomputed by a reference implementation written here;
then the percent read from the config beside the one the store recorded, the message of a store without a
global holdout, and the page (``--format html``) and its email-safe fragment."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from datetime import timedelta
from functools import reduce
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli import main
from orchestrator.clock import to_us
from orchestrator.measure import portfolio, render_portfolio_html
from orchestrator.measure._program import NO_GLOBAL_HOLDOUT
from orchestrator.testing import SimClock, World, at, customer, event
from tests.browser import browser_tools, read_text

START = at("2024-05-06T00:00:00Z")
END = START + timedelta(days=10)
GLOBAL = 20.0
JOURNEY = """\
id: {id}
version: 1
signal: count({entry}, within=1d) > 0
holdout: 20
steps:
  - id: hello
    send: {{channel: email, subject: "Hi", template: t.txt}}
goal: {{event: {goal}, within: 7d{revenue}}}
"""
AMOUNT = ", revenue: amount"
FILES = {
    "journeys/welcome.yaml": JOURNEY.format(id="welcome", entry="signup", goal="purchase", revenue=AMOUNT),
    "journeys/nudge.yaml": JOURNEY.format(id="nudge", entry="visit", goal="purchase", revenue=AMOUNT),
    "journeys/review.yaml": JOURNEY.format(id="review_ask", entry="purchase", goal="review", revenue=""),
    "templates/t.txt": "Hello",
}  # fmt: skip
CALLS = ("ship", "harmful", "no detectable effect", "not enough data yet")


def ref_bucket(seed: str, value: str) -> float:
    """GrowthBook's hash v2 from its definition (FNV-1a 32 twice), not the engine's vectorised one."""

    def fnv(text: str) -> int:
        return reduce(lambda h, byte: ((h ^ byte) * 16777619) % 2**32, text.encode("utf-8"), 2166136261)

    return (fnv(str(fnv(seed + value))) % 10000) / 10000


def run_shop(world: World, customers: int, seed: int = 4) -> None:
    """Customers sign up over three days, half visit, purchases (with an amount) fall from three days before
    the first tick to four days after the last, some reviews; the engine ticks every 6 hours for 10 days."""
    world.write_files(FILES)
    world.clock.set(START)
    rng = random.Random(seed)
    ids = [f"c{i:03d}" for i in range(customers)]
    world.add_customers(*(customer(c) for c in ids[: customers - 20]))  # the last 20 arrive by events only
    records = []
    for i, c in enumerate(ids):
        if i % 7 != 3:  # a seventh never signs up: they enter no journey
            records.append(event(c, "signup", START + timedelta(minutes=rng.randrange(0, 3 * 24 * 60))))
        if rng.random() < 0.5:
            records.append(event(c, "visit", START + timedelta(minutes=rng.randrange(0, 6 * 24 * 60))))
        for _ in range(rng.choice([0, 0, 1, 2])):
            when = START + timedelta(minutes=rng.randrange(-3 * 24 * 60, 14 * 24 * 60))
            records.append(event(c, "purchase", when, amount=rng.choice([10, 25.5, 40])))
        if rng.random() < 0.2:
            records.append(event(c, "review", START + timedelta(days=rng.randrange(0, 9))))
    world.add_events(*records)
    world.run_until(END, step="6h")


def hand_count(rows: dict[str, list[Any]], since: int, until: int, goal: str, revenue: str | None,
               low: float, high: float) -> dict[str, Any]:  # fmt: skip
    """The program's figures counted one customer at a time from the store's rows."""
    group: dict[int, str] = {}
    for key, cid in rows["customers"]:
        b = ref_bucket("global-holdout", cid)
        group[key] = (
            "global holdout" if b < low / 100 else ("everyone else" if b >= high / 100 else "left out")
        )
    converted: dict[int, bool] = {}
    spent: dict[int, float] = {}
    for key, name, ts, props in rows["events"]:
        if name == goal and since <= ts < until:
            converted[key] = True
            if revenue is not None:
                value = json.loads(props).get(revenue)
                spent[key] = spent.get(key, 0.0) + (float(value) if isinstance(value, int | float) else 0.0)
    entered = {key for key, at_us in rows["entries"] if since <= at_us < until}
    out: dict[str, Any] = {}
    for name in ("global holdout", "everyone else", "left out"):
        members = [k for k, g in group.items() if g == name]
        out[name] = {
            "n": len(members),
            "converted": sum(1 for k in members if converted.get(k)),
            "revenue": sum(spent.get(k, 0.0) for k in members),
            "entered": sum(1 for k in members if k in entered),
        }
    out["group"] = group
    return out


def store_rows(world: World) -> dict[str, list[Any]]:
    return {
        "customers": [(int(k), str(c)) for k, c in world.rows("SELECT key, id FROM customers")],
        "events": [
            (int(r[0]), str(r[1]), int(r[2]), r[3])
            for r in world.rows(
                "SELECT e.customer_key, t.name, e.ts_us, e.properties FROM events e "
                "JOIN event_types t ON t.id = e.type_id"
            )
        ],
        "entries": [
            (int(k), int(t)) for k, t in world.rows("SELECT customer_key, entered_us FROM journey_instances")
        ],
        "assignments": [
            (int(k), str(arm), layer)
            for k, arm, layer in world.rows("SELECT customer_key, arm, layer FROM holdout_assignments")
        ],
    }  # fmt: skip


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def _no_workspace(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No orchestrator.yaml found from the working folder and no percent from the environment, unless a
    test sets one."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ORCHESTRATOR_GLOBAL_HOLDOUT", raising=False)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("program")
    with World(folder, clock=SimClock(START), global_holdout=GLOBAL) as world:
        run_shop(world, 600)
        yield world


def _db(world: World) -> str:
    return str(world.store.engine.url.render_as_string(hide_password=False))


# ------------------------------------------------------------------------------------------- counts


@pytest.mark.backends("sqlite", "postgres")
def test_program_lift_counts_against_a_hand_count(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with World(tmp_path, store=store_url, clock=SimClock(START), global_holdout=GLOBAL) as world:
        run_shop(world, 400)
        rows = store_rows(world)
        ticks = [int(t) for (t,) in world.rows("SELECT now_us FROM ticks")]
    code, out, err = run_cli(capsys, "report", "--all", "--db", store_url, "--format", "json")
    assert code == 0, err
    program = json.loads(out)["program"]
    since, until = min(ticks), max(ticks)
    assert (program["from"], program["as_of"]) == (START.isoformat(), END.isoformat())
    goal = {"event": "purchase", "chosen": "the goal of 2 of 3 journeys", "revenue": "amount"}
    assert program["goal"] == {**goal, "converted": "at least one goal event in the period"}
    hand = hand_count(rows, since, until, "purchase", "amount", GLOBAL, GLOBAL)
    held, rest = hand["global holdout"], hand["everyone else"]
    assert held["n"] > 40 and rest["n"] > 200 and hand["left out"]["n"] == 0
    assert program["customers"] == len(rows["customers"]) > 380  # those known by their events only too
    assert (program["held_out"], program["everyone_else"], program["left_out"]) == (held["n"], rest["n"], 0)
    assert program["entered_a_journey"] == {
        "global holdout": held["entered"],
        "everyone else": rest["entered"],
    }
    assert held["entered"] < held["n"] and rest["entered"] < rest["n"]  # those who never signed up
    # The store's own record agrees with the hash: the global layer held out exactly the holdout group's
    # customers that entered, and no customer of it was ever treated.
    layer_global = {k for k, arm, layer in rows["assignments"] if layer == "global"}
    treated = {k for k, arm, _ in rows["assignments"] if arm == "treatment"}
    assert layer_global and layer_global <= {k for k, g in hand["group"].items() if g == "global holdout"}
    assert not treated & layer_global and program["treated_in_holdout"] == 0
    assert program["global_holdout"]["recorded_percents"] == [{"percent": GLOBAL, "assignments": len(
        [1 for _, _, layer in rows["assignments"] if layer == "global"])}]  # fmt: skip

    lift = program["lift"]
    assert lift["control"] == "global holdout"
    assert [(a["name"], a["n"]) for a in lift["arms"]] == [
        ("global holdout", held["n"]),
        ("everyone else", rest["n"]),
    ]
    conversion = next(m for m in lift["metrics"] if m["name"] == "converted")
    c_held, c_rest = conversion["arms"]
    assert (c_held["conversions"], c_rest["conversions"]) == (held["converted"], rest["converted"])
    [comparison] = conversion["comparisons"]
    assert comparison["absolute"] == pytest.approx(
        rest["converted"] / rest["n"] - held["converted"] / held["n"]
    )
    assert comparison["absolute_ci"]["low"] < comparison["absolute"] < comparison["absolute_ci"]["high"]
    assert comparison["verdict"]["call"] in CALLS
    if held["n"] < 100:
        assert any("small sample" in w for w in comparison["verdict"]["warnings"])
    revenue = next(m for m in lift["metrics"] if m["name"] == "revenue")
    r_held, r_rest = revenue["arms"]
    assert r_held["total"] == pytest.approx(held["revenue"]) and r_rest["total"] == pytest.approx(
        rest["revenue"]
    )
    assert r_held["mean"] == pytest.approx(held["revenue"] / held["n"])
    # The split check compares the groups with the 20% declared.
    assert lift["srm"]["declared"].startswith("20% in the global holdout")
    assert any("dilute both groups alike" in note for note in program["notes"])

    code, out, _ = run_cli(capsys, "report", "--all", "--db", store_url)
    assert code == 0
    assert "The whole program: the global holdout (messaged by no journey) against everyone else" in out
    assert f"{held['n']:,} in the 20% global holdout, {rest['n']:,} everyone else" in out


def test_another_period_and_goal(shop: World, capsys: pytest.CaptureFixture[str]) -> None:
    rows = store_rows(shop)
    until = max(int(t) for (t,) in shop.rows("SELECT now_us FROM ticks"))
    since = to_us(START + timedelta(days=4))
    code, out, err = run_cli(capsys, "report", "--all", "--db", _db(shop), "--format", "json",
                             "--from", "2024-05-10", "--program-goal", "review")  # fmt: skip
    assert code == 0, err
    program = json.loads(out)["program"]
    assert program["from"] == (START + timedelta(days=4)).isoformat()
    assert program["goal"]["event"] == "review" and program["goal"]["chosen"] == "as asked"
    assert program["goal"]["revenue"] is None  # the journey whose goal is review names no revenue
    hand = hand_count(rows, since, until, "review", None, GLOBAL, GLOBAL)
    [conversion] = program["lift"]["metrics"]  # no revenue metric
    assert [a["conversions"] for a in conversion["arms"]] == [
        hand["global holdout"]["converted"],
        hand["everyone else"]["converted"],
    ]
    assert program["entered_a_journey"]["everyone else"] == hand["everyone else"]["entered"]
    for argv, message in [
        (["report", "welcome", "--from", "2024-05-10"], "--from is for the program's lift: add --all"),
        (["report", "welcome", "--program-goal", "x"], "--program-goal is for the program's lift: add --all"),
        (["report", "--all", "--from", "yesterday"], "--from 'yesterday' is not a day"),
        (["report", "--all", "--from", "2024-06-01", "--now", "2024-05-20T00:00:00Z"], "is not before"),
    ]:
        code, _, err = run_cli(capsys, *argv, "--db", _db(shop))
        assert code == 2 and message in err, err


def test_the_configured_percent_beside_the_recorded_one(
    shop: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The config (here its environment variable) says 30% now, the store recorded 20%: customers between
    the two were held out only part of the time (if at all), and are left out of both groups."""
    rows = store_rows(shop)
    ticks = [int(t) for (t,) in shop.rows("SELECT now_us FROM ticks")]
    monkeypatch.setenv("ORCHESTRATOR_GLOBAL_HOLDOUT", "30")
    code, out, err = run_cli(capsys, "report", "--all", "--db", _db(shop), "--format", "json")
    assert code == 0, err
    program = json.loads(out)["program"]
    hand = hand_count(rows, min(ticks), max(ticks), "purchase", "amount", 20.0, 30.0)
    assert program["global_holdout"]["configured_percent"] == 30.0
    assert (program["global_holdout"]["percent"], program["global_holdout"]["largest_percent"]) == (
        20.0,
        30.0,
    )
    assert program["left_out"] == hand["left out"]["n"] > 0
    assert program["held_out"] == hand["global holdout"]["n"]
    assert program["everyone_else"] == hand["everyone else"]["n"]
    assert any("config sets 30%, the store recorded 20%" in n for n in program["notes"])
    assert any("left out of both groups" in n for n in program["notes"])


def test_a_configured_percent_the_engine_did_not_run_with_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "w").mkdir()
    with World(tmp_path / "w", clock=SimClock(START)) as world:  # the engine runs without a global holdout
        run_shop(world, 120, seed=9)
        db = _db(world)
        code, out, _ = run_cli(capsys, "report", "--all", "--db", db)
        assert code == 0
        head = "The whole program: the global holdout (messaged by no journey) against everyone else"
        assert f"{head}\n  {NO_GLOBAL_HOLDOUT}" in out
        code, out, _ = run_cli(capsys, "report", "--all", "--db", db, "--format", "json")
        program = json.loads(out)["program"]
        assert program["lift"] is None and program["note"] == NO_GLOBAL_HOLDOUT
        # Set one now, after the fact: the store shows the engine treated customers of the "holdout".
        monkeypatch.setenv("ORCHESTRATOR_GLOBAL_HOLDOUT", "10")
        treated = {int(k) for (k,) in world.rows("SELECT DISTINCT customer_key FROM holdout_assignments "
                                                 "WHERE arm = 'treatment'")}  # fmt: skip
        ids = dict((int(k), str(c)) for k, c in world.rows("SELECT key, id FROM customers"))
        expected = sum(1 for k in treated if ref_bucket("global-holdout", ids[k]) < 0.10)
        code, out, _ = run_cli(capsys, "report", "--all", "--db", db, "--format", "json")
        assert json.loads(out)["program"]["treated_in_holdout"] == expected > 0
        code, out, _ = run_cli(capsys, "report", "--all", "--db", db)
        assert re.search(rf"WARNING: {expected} customers of the holdout group were assigned", out)


# --------------------------------------------------------------------------------------------- pages


def test_the_page_and_the_email_fragment(
    shop: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "portfolio.html"
    code, _, err = run_cli(capsys, "report", "--all", "--db", _db(shop), "--format", "html", "-o", str(page))
    assert code == 0 and f"wrote {page}" in err
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>")
    # Self-contained: no script, nothing fetched (the SVG namespace URI is a name, never fetched).
    assert "<script" not in html and " src=" not in html and " href=" not in html
    assert "@import" not in html and "url(" not in html
    assert html.count("<svg") == 2  # the program's lift and the forest of journeys
    for name in ("welcome", "nudge", "review_ask"):
        assert f">{name}</text>" in html and f"<td>{name}</td>" in html
    assert "The whole program: the global holdout against everyone else" in html
    assert "Benjamini-Hochberg" in html and "Benjamini-Yekutieli" in html
    code, out, _ = run_cli(capsys, "report", "--all", "--db", _db(shop), "--format", "json")
    data = json.loads(out)
    assert f"{data['program']['held_out']:,} in the 20% global holdout" in html

    fragment = render_portfolio_html(portfolio(shop.store), email=True)
    assert fragment.startswith('<div style="') and "<svg" not in fragment
    assert "<style" not in fragment and "class=" not in fragment and "<html" not in fragment
    assert " src=" not in fragment and " href=" not in fragment
    assert fragment.count("<table") == 3  # the program's groups, its lifts, the journeys
    for name in ("welcome", "nudge", "review_ask"):
        assert f">{name}</td>" in fragment
    assert "global holdout" in fragment and "not enough data yet" in fragment


def test_no_global_holdout_on_the_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "w").mkdir()
    with World(tmp_path / "w", clock=SimClock(START)) as world:
        run_shop(world, 60, seed=2)
        html = render_portfolio_html(portfolio(world.store))
    assert NO_GLOBAL_HOLDOUT in html and html.count("<svg") == 1  # the forest only


# ------------------------------------------------------------------------------------- in a browser


def test_the_page_in_headless_chromium(
    shop: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The page as a person sees it: laid out by Chromium, its pieces read back by OCR for the program's
    heading, figures and call, and every journey's name and call in the table."""
    from playwright.sync_api import sync_playwright

    browser_path, ocr = browser_tools()
    page_file = tmp_path / "portfolio.html"
    assert main(["report", "--all", "--db", _db(shop), "--format", "html", "-o", str(page_file)]) == 0
    _, out, _ = run_cli(capsys, "report", "--all", "--db", _db(shop), "--format", "json")
    data = json.loads(out)
    shots = {name: tmp_path / f"{name}.png" for name in ("page", "program", "forest", "journeys")}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        try:
            page = browser.new_context(
                viewport={"width": 1280, "height": 900}, device_scale_factor=2
            ).new_page()
            page.goto(page_file.as_uri())
            page.screenshot(path=str(shots["page"]), full_page=True)
            # Both charts laid out, not just parsed; the forest has a dot per journey compared.
            widths = page.eval_on_selector_all(
                "svg", "nodes => nodes.map(n => n.getBoundingClientRect().width)"
            )
            assert len(widths) == 2 and min(widths) > 400
            dots = page.eval_on_selector_all("svg:last-of-type circle", "nodes => nodes.length")
            assert dots >= len(data["journeys"])
            top = page.locator("h2").first.bounding_box()
            assert top is not None
            page.screenshot(
                path=str(shots["program"]), clip={"x": 0, "y": 0, "width": 1280, "height": top["y"] + 260}
            )
            page.locator("svg").nth(1).screenshot(path=str(shots["forest"]))
            page.locator("table").nth(2).screenshot(path=str(shots["journeys"]))
        finally:
            browser.close()
    print(f"\nscreenshots: {' '.join(str(s) for s in shots.values())}")

    def read(name: str) -> str:
        return read_text(ocr, shots[name], "--psm", "6")

    program = data["program"]
    head = read("program")
    assert "Every journey side by side" in head, head
    assert "The whole program" in head and "global holdout" in head, head
    assert re.search(rf"{program['held_out']}\s+in the 20% global holdout", head), head
    [converted] = [m for m in program["lift"]["metrics"] if m["name"] == "converted"]
    call = converted["comparisons"][0]["verdict"]["call"]
    assert call.upper() in head.upper(), (call, head)
    forest = read("forest")
    for row in data["journeys"]:
        assert row["journey"].replace("_", "") in forest.replace("_", ""), (row["journey"], forest)
    table = read("journeys")
    for row in data["journeys"]:
        line = next(
            (t for t in table.splitlines() if row["journey"].replace("_", "") in t.replace("_", "")), ""
        )
        assert line, (row["journey"], table)
        # OCR reads the bold call in its box without its spaces.
        assert (row["call"] or row["note"]).replace(" ", "") in line.replace(" ", ""), (row, line)
        assert f"{row['sent']:,}" in line, (row, line)
