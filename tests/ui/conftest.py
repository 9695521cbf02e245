"""Fixtures for real-browser tests: Debian's headless Chromium driven by Playwright.

Never ``playwright install``: the browser is the system one at ``/usr/bin/chromium`` (override
with ``WORKBENCH_CHROMIUM``); tests using ``chromium_browser`` skip, with the reason, when it is
missing. ``browser_page`` gives a fresh page plus a :class:`PageLog` of every request, console
message and page error, to assert that nothing left 127.0.0.1. Screenshots go to
``test-artifacts/`` (git-ignored).
"""

from __future__ import annotations

import os
import sys
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CHROMIUM = Path(os.environ.get("WORKBENCH_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


@dataclass
class PageLog:
    """What a page did: request URLs (every frame and worker of its context), console lines, errors."""

    requests: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def external(self) -> list[str]:
        """Requests to anything but the loopback interface (data:, blob:, about: are local)."""
        out = []
        for url in self.requests:
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("data", "blob", "about") and parts.hostname not in LOCAL_HOSTS:
                out.append(url)
        return out

    def csp_violations(self) -> list[str]:
        """Console reports of requests the page's Content-Security-Policy refused (attempts that
        never reached the network, so they are not in ``requests``)."""
        return [line for line in self.console if "Content Security Policy" in line or "Refused to" in line]


@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[Any]:
    """A headless Chromium for the test module (module scope: no Playwright loop lingers between
    modules, e.g. while nbclient runs notebooks)."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: browser tests need Debian's chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(chromium_browser: Any) -> Iterator[tuple[Any, PageLog]]:
    """``(page, log)``: a page in a fresh context (no cookies, no storage), 1280×800."""
    context = chromium_browser.new_context(viewport={"width": 1280, "height": 800})
    log = PageLog()
    context.on("request", lambda request: log.requests.append(request.url))
    page = context.new_page()
    page.on("console", lambda message: log.console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: log.errors.append(str(error)))
    try:
        yield page, log
    finally:
        context.close()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """``test-artifacts/`` at the repository root (git-ignored), for screenshots."""
    path = ROOT / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path
