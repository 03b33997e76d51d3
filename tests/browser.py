"""Debian's headless chromium under Playwright, for the tests that drive a real browser.

Needs ``apt-get install chromium`` (``/usr/bin/chromium``, or ``CLAIMFLOW_TEST_CHROMIUM``) and
``pip install playwright`` (its own browser download is not used). Without them a browser test is skipped,
unless ``CLAIMFLOW_REQUIRE_BROWSER=1`` (as in CI), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("CLAIMFLOW_TEST_CHROMIUM", "/usr/bin/chromium")
REQUIRE_BROWSER = os.environ.get("CLAIMFLOW_REQUIRE_BROWSER") == "1"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PLAYWRIGHT_EXPECT_MS = 5_000  # Playwright's default timeout of ``expect``


def unavailable(reason: str) -> None:
    """Skip the test for want of a browser, or fail it where a browser is required."""
    if REQUIRE_BROWSER:
        pytest.fail(reason)
    pytest.skip(reason)


@contextmanager
def chromium(*, expect_seconds: float) -> Iterator[Any]:
    """A launched headless chromium (a Playwright ``Browser``); ``expect`` waits up to ``expect_seconds`` while
    it is open, and Playwright's default again afterwards."""
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install playwright)")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        unavailable(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    expect.set_options(timeout=expect_seconds * 1000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=60_000
        )
        try:
            yield browser
        finally:
            browser.close()
            expect.set_options(timeout=PLAYWRIGHT_EXPECT_MS)  # for any other browser test
