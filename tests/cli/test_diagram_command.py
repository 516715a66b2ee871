"""``orchestrator diagram``: the SVG image of a journey, and counts read from a store given with ``--db``."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from orchestrator.cli import _diagram, main
from orchestrator.language import DiagramCounts, JourneyPlan, compile_loaded, load_journey
from orchestrator.store import Store, open_store

ROOT = Path(__file__).resolve().parents[2]
WINBACK = ROOT / "journeys" / "winback.yaml"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _plan() -> JourneyPlan:
    return compile_loaded(load_journey(WINBACK))


def test_the_svg_is_written_to_stdout_or_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "diagram", str(WINBACK), "--format", "svg")
    assert code == 0, err
    assert out == _plan().diagram("svg")
    assert ET.fromstring(out).tag == "{http://www.w3.org/2000/svg}svg"
    target = tmp_path / "winback.svg"
    code, out, err = run(
        capsys,
        "diagram",
        "winback",
        "--journeys",
        str(ROOT / "journeys"),
        "--format",
        "svg",
        "-o",
        str(target),
    )
    assert code == 0 and out == "" and f"wrote {target}" in err
    assert target.read_text(encoding="utf-8") == _plan().diagram("svg")


def test_an_unknown_format_is_bad_usage(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "diagram", str(WINBACK), "--format", "png")
    assert code == 2 and "png" in err


def test_a_store_that_is_not_there_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere.db"
    code, out, err = run(capsys, "diagram", str(WINBACK), "--format", "svg", "--db", f"sqlite:///{missing}")
    assert code == 1 and out == ""
    assert err.strip().endswith(f"no store at {missing}") and len(err.strip().splitlines()) == 1
    assert not missing.exists()  # reading counts creates nothing


def test_counts_come_from_the_store_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'orchestrator.db'}"
    open_store(url).dispose()
    # A store where the journey never ran has no counts: the diagram is drawn without them, and says so.
    code, out, err = run(capsys, "diagram", str(WINBACK), "--db", url)
    assert code == 0
    assert out == _plan().diagram("mermaid")
    assert "no step counts for journey winback version 1 in this store: drawn without them" in err

    # What the hook gives is what the diagram writes, in each format.
    seen: list[tuple[str, int]] = []

    def funnel(store: Store, journey: JourneyPlan) -> DiagramCounts:
        assert store.is_initialised()
        seen.append((journey.id, journey.version))
        return DiagramCounts({"offer": 1204, "completed": 0}, {("step-2", "next"): 980})

    monkeypatch.setattr(_diagram, "_funnel_counts", funnel)
    code, out, err = run(capsys, "diagram", str(WINBACK), "--db", url)
    assert code == 0 and err == ""
    assert 'state "offer (send email) · 1,204" as s0' in out and "after 3d · 980" in out
    assert 'state "completed · 0" as s7' in out
    code, out, _ = run(capsys, "diagram", str(WINBACK), "--db", url, "--format", "svg")
    assert code == 0
    texts = ["".join(t.itertext()) for t in ET.fromstring(out).iter("{http://www.w3.org/2000/svg}text")]
    assert "send email · 1,204" in texts and "after 3d · 980" in texts
    assert seen == [("winback", 1), ("winback", 1)]
