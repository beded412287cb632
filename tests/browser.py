"""A real browser for the UI tests: Debian's headless Chromium driven by Playwright (which
downloads no browser of its own here). Without Chromium the tests skip, except in CI, whose
.ci/run installs it. Every page is opened with the network cut off but for this machine, so a
page that needs the internet shows it. Screenshots go to test-screenshots/ (not in git)."""

import contextlib
import os
import shutil
from typing import Iterator

import numpy as np
import pytest

from tests.conftest import REPO

SCREENSHOTS = REPO / "test-screenshots"
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"  # no name resolves but this machine's


def chromium() -> str:
    """The headless Chromium to drive, or a skip (a failure in CI)."""
    path = shutil.which("chromium-headless-shell") or shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("no Chromium in CI: .ci/run installs Debian's chromium-headless-shell")
        pytest.skip("no headless Chromium here (apt-get install chromium-headless-shell)")
    return path


@contextlib.contextmanager
def browser_page(width: int = 1600, height: int = 1000) -> Iterator:
    """A Playwright page in headless Chromium, offline but for 127.0.0.1."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox", OFFLINE])
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def screenshot(page, name: str) -> np.ndarray:
    """Save a full-page screenshot as test-screenshots/<name>.png; return it as RGB pixels."""
    import cv2

    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return cv2.imread(str(path))[:, :, ::-1]


def pixels_of(image: np.ndarray, hex_color: str, tolerance: int = 30) -> int:
    """How many pixels of `image` are within `tolerance` of colour `hex_color` ('4c78a8')."""
    rgb = np.array([int(hex_color[i:i + 2], 16) for i in (0, 2, 4)])
    return int((np.abs(image.astype(int) - rgb).max(axis=2) <= tolerance).sum())

