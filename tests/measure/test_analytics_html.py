"""The analytics page as a person sees it: written by ``orchestrator analytics --format html`` from a seeded
shop, opened in headless Chromium (through playwright), the full-page screenshot read back with OCR for
its headings and figures and checked for the charts' colours."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from analytics_story import build, shop
from PIL import Image

from orchestrator.cli import main
from orchestrator.measure._html import PALETTE
from tests.browser import browser_tools, read_text

WINDOW = ("--from", "2024-02-01", "--to", "2024-04-29")


def _near(pixels: np.ndarray, colour: str, tolerance: int = 12) -> int:
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(pixels[..., :3].astype(int) - rgb).max(axis=-1) <= tolerance).sum())


def test_analytics_page_in_headless_chromium(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    browser_path, ocr = browser_tools()
    db = build(tmp_path / "shop.db", shop())
    page_file = tmp_path / "analytics.html"
    assert main(["analytics", *WINDOW, "--format", "html", "-o", str(page_file), "--db", db]) == 0
    assert main(["analytics", *WINDOW, "--format", "json", "--db", db]) == 0
    data = json.loads(capsys.readouterr().out)

    shot = tmp_path / "analytics.png"
    parts = {name: tmp_path / f"{name}.png" for name in ("top", "birth", "tiers", "rfm")}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.goto(page_file.as_uri())
            page.screenshot(path=str(shot), full_page=True)
            # Six charts drawn, each wider than zero: the SVGs were laid out, not just parsed.
            widths = page.eval_on_selector_all(
                "svg", "nodes => nodes.map(n => n.getBoundingClientRect().width)"
            )
            assert len(widths) == 6 and min(widths) > 500
            # Pieces of the page for OCR, drawn at twice the pixels (the whole page, 6,000 pixels high,
            # takes half a minute to read).
            sharp = browser.new_context(
                viewport={"width": 1280, "height": 900}, device_scale_factor=2
            ).new_page()
            sharp.goto(page_file.as_uri())
            sharp.screenshot(path=str(parts["top"]), clip={"x": 0, "y": 0, "width": 1280, "height": 330})
            for name, index in (("birth", 0), ("tiers", 2), ("rfm", 3)):
                sharp.locator("table").nth(index).screenshot(path=str(parts[name]))
        finally:
            browser.close()
    print(f"\nscreenshots: {shot} {' '.join(str(s) for s in parts.values())}")

    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[1] == 1280 and pixels.shape[0] > 3000  # the whole page, charts and tables
    # DAU, WAU and MAU lines in their colours (the shaded table cells are lighter blues).
    for colour in PALETTE[1:4]:
        assert _near(pixels, colour) > 300, colour

    def read(name: str) -> str:
        # --psm 6: one block of text, which reads a table row by row.
        return read_text(ocr, parts[name], "--psm", "6")

    top = read("top")
    assert "Engagement analytics 2024-02-01 to 2024-04-29" in top, top
    assert "Active customers per day" in top, top
    # The figures of the first birth cohort, as the JSON gives them: its size and its 30-day retention.
    birth = read("birth")
    first = data["retention"]["birth"][0]
    assert first["d30"]["measurable"]
    assert re.search(rf"{first['cohort']}\s+{first['customers']}\b", birth), (first, birth)
    # OCR may drop the space between a figure and its parenthesis.
    rate = re.escape(f"{100 * first['d30']['rate']:.1f}%")
    assert re.search(rf"{first['customers']}\W+{rate}\s*\({first['d30']['retained']}\)", birth), (
        first,
        birth,
    )
    assert "not yet" in birth
    # The tiers: every row of the matrix, its label and its counts; the RFM grid: the champions cell.
    tiers = read("tiers")
    for label, row in zip(data["tiers"]["from_labels"], data["tiers"]["matrix"], strict=True):
        counts = r"\s+".join(f"{v:,}" for v in row)
        assert re.search(re.escape(label).replace("_", "[_ ]?") + r"\s+" + counts, tiers), (label, row, tiers)
    rfm = read("rfm")
    champions = next(c for c in data["rfm"]["cells"] if c["r"] == 5 and c["f"] == 5)
    assert re.search(rf"\b{champions['customers']} champions", rfm), (champions, rfm)
