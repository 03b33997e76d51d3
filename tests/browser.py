"""Debian's headless chromium under Playwright, for the tests that drive a real browser.

Needs ``apt-get install chromium`` (``/usr/bin/chromium``, or ``CLAIMFLOW_TEST_CHROMIUM``) and
``pip install playwright`` (its own browser download is not used). Without them a browser test is skipped,
unless ``CLAIMFLOW_REQUIRE_BROWSER=1`` (as in CI), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import threading
import time
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
PHONE = {"width": 390, "height": 844}
SCALE = 2  # device pixels per CSS pixel
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
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


def listening() -> tuple[socket.socket, str]:
    """A socket bound to a free local port, and the address a browser opens it at."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}"


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` served on a free local port; yields its address."""
    listener, address = listening()
    with served(app, listener):
        yield address


def phone(browser: Any, *, script: bool = True) -> Any:
    """A fresh phone-sized browser profile (``script=False``: a phone with JavaScript off)."""
    return browser.new_context(viewport=PHONE, device_scale_factor=SCALE, is_mobile=True, has_touch=True,
                               java_script_enabled=script)  # fmt: skip


def checking(browser: Any) -> Any:
    """A phone-sized profile that lets the test's own script (axe-core) in past the pages' no-script policy."""
    return browser.new_context(viewport=PHONE, device_scale_factor=SCALE, bypass_csp=True)


@contextmanager
def served(app: Any, listener: socket.socket) -> Iterator[None]:
    """``app`` served by uvicorn in a thread on ``listener`` (a bound socket) until the block ends."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, name="web-app", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the web app did not start"
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        listener.close()


def serious_violations(page: Any) -> list[str]:
    """What axe-core (run in the page) finds of impact serious or critical: ``rule: what (how many)``."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [f"{v['id']}: {v['help']} ({len(v['nodes'])}: {[n['target'] for n in v['nodes']][:3]})"
            for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]  # fmt: skip


def screenshot(page: Any, directory: Path, name: str) -> Path:
    """A full-page PNG of what the page shows, in ``directory`` and in ``CLAIMFLOW_SCREENSHOT_DIR`` if set; checks
    that it is a PNG as wide as the phone (nothing sticks out sideways)."""
    path = directory / name
    page.screenshot(path=str(path), full_page=True)
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR", name
    width, height = struct.unpack(">II", data[16:24])
    assert width == PHONE["width"] * SCALE and height >= PHONE["height"] * SCALE, (name, width, height)
    keep = os.environ.get("CLAIMFLOW_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(keep) / name)
    return path
