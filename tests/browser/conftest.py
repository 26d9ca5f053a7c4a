"""Real-browser fixtures: Debian's chromium, driven by Playwright, against OneFlow's live ASGI app.

Playwright never downloads a browser here: it launches the system's chromium
(``apt-get install chromium``). Without it every browser test skips, naming the package;
under .ci/run (ONEFLOW_BROWSER_REQUIRED=1), which installs it, they fail instead.
Every test's page is checked for requests to any host but the live server.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Route, ViewportSize, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.conftest import LiveAsgiServer

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
DESKTOP = ViewportSize(width=1280, height=800)
PHONE = ViewportSize(width=390, height=844)
# Schemes that never leave the page (inline images, generated blobs).
LOCAL_SCHEMES = {"data", "blob", "about"}


@pytest.fixture
def server(live_asgi: LiveAsgiServer, monkeypatch: pytest.MonkeyPatch) -> LiveAsgiServer:
    """OneFlow's real ASGI app (Django, static files and the /v1 gateway) on a free port."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return live_asgi


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    """Headless chromium for one test.

    Per test, not per session: between two calls Playwright's sync API leaves its
    event loop marked as running on this thread, so while a driver is alive Django's
    async guard refuses every ORM call made here. A driver that outlived its test
    would break the tests after it; this one stops first, and the guard is relaxed
    only meanwhile (the test's own ORM calls are plain sync code).
    """
    if not os.access(CHROMIUM, os.X_OK):
        reason = f"no {CHROMIUM}: browser tests need Debian's chromium (apt-get install chromium)"
        # CI installs it (.ci/run), so there a missing browser is a failure, not a skip.
        if os.environ.get("ONEFLOW_BROWSER_REQUIRED"):
            pytest.fail(reason)
        pytest.skip(reason)
    # Only the driver ships with the package; nothing may fetch a browser build.
    monkeypatch.setenv("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


@dataclass
class RequestLog:
    """Every URL the browser asked for during one test."""

    origin: str
    urls: list[str] = field(default_factory=list)

    def outside(self) -> list[str]:
        return [url for url in self.urls if not self.is_local(url)]

    def is_local(self, url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme in LOCAL_SCHEMES or f"{parts.scheme}://{parts.netloc}" == self.origin

    def assert_only_the_server(self) -> None:
        """No page loads an asset (script, style, font, image, XHR) from anywhere but OneFlow."""
        assert self.urls, "the browser made no request at all"
        assert self.outside() == [], f"requests left the server: {self.outside()}"


@pytest.fixture
def requests_seen(server: LiveAsgiServer) -> RequestLog:
    return RequestLog(origin=server.url)


@pytest.fixture
def page(browser: Browser, server: LiveAsgiServer, requests_seen: RequestLog) -> Iterator[Page]:
    """A fresh context (no cookies) per test at desktop width, based at the live server.

    Requests to other hosts are recorded, then aborted, so a test never waits on
    the internet; the check runs again when the test ends.
    """
    context = browser.new_context(base_url=server.url, viewport=DESKTOP)
    context.set_default_timeout(10_000)
    context.on("request", lambda request: requests_seen.urls.append(request.url))

    def block_outside(route: Route) -> None:
        if requests_seen.is_local(route.request.url):
            route.continue_()
        else:
            route.abort("blockedbyclient")

    context.route("**/*", block_outside)
    page = context.new_page()
    yield page
    context.close()
    assert requests_seen.outside() == [], f"requests left the server: {requests_seen.outside()}"


def use_phone_width(page: Page) -> None:
    page.set_viewport_size(PHONE)


def use_desktop_width(page: Page) -> None:
    page.set_viewport_size(DESKTOP)


def assert_fits_the_width(page: Page) -> None:
    """Nothing overflows sideways once the page has settled (charts size themselves
    after load): it reads without horizontal scrolling."""
    page.wait_for_load_state("load")
    fits = "() => document.documentElement.scrollWidth <= window.innerWidth"
    try:
        page.wait_for_function(fits, timeout=5_000)
    except PlaywrightTimeoutError:
        widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        raise AssertionError(f"{page.url} is {widths[0]}px wide in a {widths[1]}px window") from None


@dataclass
class Screenshots:
    test: str
    taken: list[Path] = field(default_factory=list)

    def __call__(self, page: Page, step: str) -> Path:
        """Saves the whole page as test-artifacts/screenshots/<test>-<step>.png."""
        path = SCREENSHOTS / f"{self.test}-{_slug(step)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Screenshots:
    return Screenshots(test=_slug(request.node.name))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")
