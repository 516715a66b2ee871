"""What the tests that open a page in headless Chromium and read its screenshot back share: the browser
and the OCR program, required in CI, a skip elsewhere when one is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def browser_tools() -> tuple[str, str]:
    """The paths of Chromium and tesseract; fails in CI, skips elsewhere, when either (or playwright) is
    missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    ocr = shutil.which("tesseract")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        browser = None
    if browser is None or ocr is None:
        if os.environ.get("CI"):
            pytest.fail(
                "chromium, tesseract and playwright are needed in CI (see .ci/run and the test extra)"
            )
        pytest.skip("chromium, tesseract or playwright is missing")
    return browser, ocr


def read_text(ocr: str, image: Path, *options: str) -> str:
    """The text tesseract reads in ``image``."""
    done = subprocess.run(
        [ocr, str(image), "-", *options], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout
