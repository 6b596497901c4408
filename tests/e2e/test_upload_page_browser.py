"""The upload test page in a real headless Chromium against the real stack: gunicorn, Celery
workers on Redis and the Cloudinary emulator. The browser uploads straight to the emulator
with the album's signed form, as a user of ``make run`` would, and watches the album fill in.

Chromium is the Debian package (``apt-get install chromium``), driven by Playwright for Python;
``playwright install`` is never needed (it downloads browsers, which this machine cannot)."""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
from playwright.sync_api import expect, sync_playwright

from common import tokens
from tests.conftest import FIXTURES, ROOT, TEST_JWT_SECRET

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# The README's screenshot is refreshed only on request (UPDATE_SCREENSHOT=1), so a test run
# leaves the tracked file alone; otherwise the screenshot goes to the test's temp folder.
README_SCREENSHOT = ROOT / "docs" / "upload_test.png"
# The pipeline runs six photos in a few seconds; the margin is for a slow CI machine.
PIPELINE_TIMEOUT_MS = 90_000


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        message = "chromium not installed: apt-get install chromium"
        if _in_ci():
            pytest.fail(message)  # CI installs it: a missing browser there is a broken build
        pytest.skip(message)
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Tab:
    """A browser page and what went wrong in it: script errors, error lines on the console
    (a CSP violation is one), and every request it made, to check where the photos went."""

    page: Any
    problems: list[str] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)

    def record(self) -> None:
        self.page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        self.page.on("console", self._console)
        self.page.on("request", lambda req: self.requests.append((req.method, req.url)))

    def _console(self, msg: Any) -> None:
        # The browser's own /favicon.ico probe is not the page's doing (the app has no favicon).
        if msg.type == "error" and not msg.location.get("url", "").endswith("/favicon.ico"):
            self.problems.append(f"console: {msg.text}")


@pytest.fixture
def tab(browser: Any, stack: Any) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    opened = Tab(context.new_page())
    opened.record()
    try:
        yield opened
    finally:
        context.close()


def open_page(page: Any, stack: Any, album_id: str, token: str) -> None:
    """As ``make run`` prints it: the album and token in the query string."""
    page.goto(f"{stack.web_url}/upload_test?album={album_id}&token={token}")


def test_upload_six_photos_and_watch_the_album_fill_in(stack: Any, tab: Tab, album: str) -> None:
    """``album`` (tests/e2e/conftest.py) is a fresh album with the emulator's faults cleared."""
    page = tab.page
    album_id = album
    token = stack.token(album_id)
    photos = sorted(FIXTURES.glob("*.jpg"))
    assert len(photos) == 6, "tests/fixtures/photos should hold the six fixture photos"

    open_page(page, stack, album_id, token)
    # The token is read, then dropped from the address bar (and so from history and Referers).
    expect(page.locator("#album-id")).to_have_text(album_id)
    assert "token=" not in page.url and f"album={album_id}" in page.url
    expect(page.locator("input[type=file]#files")).to_be_enabled()
    expect(page.locator("#images-count")).to_have_text("0")

    page.set_input_files("input[type=file]#files", [str(p) for p in photos])

    # Six cards, each with its face-cropped thumbnail loaded from the delivery host.
    thumbs = page.locator(".image-card img.thumb:not([hidden])")
    expect(thumbs).to_have_count(6, timeout=PIPELINE_TIMEOUT_MS)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.image-card img.thumb')]"
        ".filter(img => img.complete && img.naturalWidth > 0).length === 6",
        timeout=30_000,
    )
    expect(page.locator("#poll-state")).to_have_text("Up to date.", timeout=PIPELINE_TIMEOUT_MS)
    expect(page.locator("#images-count")).to_have_text("6")
    expect(page.locator(".upload[data-state=done]")).to_have_count(6)
    expect(page.locator("#batch-progress")).to_have_js_property("value", 1)

    # One face on the astronaut, drawn over her preview where OpenCV found it:
    # about [177, 67, 95, 95] in the 512x512 original (see tests/fixtures/photos/README.md; 1-2 px either way).
    astronaut = page.locator('.image-card[data-file-name="astronaut.jpg"]')
    expect(astronaut.locator(".face-box")).to_have_count(1)
    photo_box = astronaut.locator(".photo").bounding_box()
    face_box = astronaut.locator(".face-box").bounding_box()
    scale = photo_box["width"] / 512
    assert abs(face_box["x"] - photo_box["x"] - 177 * scale) < 4
    assert abs(face_box["y"] - photo_box["y"] - 67 * scale) < 4
    assert abs(face_box["width"] - 95 * scale) < 4

    # The astronaut and its small recompressed copy: one near-duplicate group of two.
    badge = astronaut.locator(".dup-badge")
    expect(badge).to_have_text(re.compile(r"^duplicate group \d+$"))
    group = badge.inner_text()
    expect(page.locator('.image-card[data-file-name="astronaut-small.jpg"] .dup-badge')).to_have_text(group)
    expect(page.locator(".dup-badge", has_text=re.compile(f"^{group}$"))).to_have_count(2)

    # EXIF and colours are shown; nothing failed.
    expect(astronaut.locator(".exif")).to_contain_text("Make")
    expect(page.locator('.image-card[data-file-name="coffee.jpg"] .swatch').first).to_be_visible()
    expect(page.locator(".image-card[data-status=failed]")).to_have_count(0)
    expect(page.locator("#error")).to_be_hidden()

    # The photos went from the browser straight to the emulator, never through the web app.
    upload_url = stack.album(album_id)["upload_form"]["url"]
    assert sum(1 for method, url in tab.requests if method == "POST" and url == upload_url) == 6
    assert not [url for method, url in tab.requests if method == "POST" and url.startswith(stack.web_url)
                and not url.endswith(f"/api/v1/albums/{album_id}/upload_done")]
    assert tab.problems == []  # no script error, no CSP violation

    screenshot = README_SCREENSHOT if os.environ.get("UPDATE_SCREENSHOT") == "1" else stack.tmp / "upload_test.png"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size < 500_000


def test_an_expired_token_is_said_in_words(stack: Any, tab: Tab, album: str) -> None:
    page = tab.page
    album_id = album
    # Issued 20000 s ago with the 4 h lifetime: expired well beyond any leeway.
    expired = tokens.issue_session("e2e-user", {album_id: ("image_upload",)}, TEST_JWT_SECRET, 14400,
                                   now=int(time.time()) - 20000)
    open_page(page, stack, album_id, expired)
    expect(page.locator("#error")).to_contain_text("401")
    expect(page.locator("#error")).to_contain_text("expired")
    expect(page.locator("input[type=file]#files")).to_be_disabled()


def test_a_token_without_the_right_is_said_in_words(stack: Any, tab: Tab, album: str) -> None:
    page = tab.page
    album_id = album
    other = stack.new_album()
    open_page(page, stack, album_id, stack.token(other))
    expect(page.locator("#error")).to_contain_text("no right")
    expect(page.locator("#error")).to_contain_text("403")


def test_a_read_only_token_sees_the_album_but_cannot_upload(stack: Any, tab: Tab, album: str) -> None:
    page = tab.page
    album_id = album
    open_page(page, stack, album_id, stack.token(album_id, abilities=("read",)))
    expect(page.locator("#images-count")).to_have_text("0")
    expect(page.locator("#upload-note")).to_contain_text("no image_upload right")
    expect(page.locator("input[type=file]#files")).to_be_disabled()
    expect(page.locator("#error")).to_be_hidden()


def test_a_network_failure_is_said_in_words(stack: Any, tab: Tab, album: str) -> None:
    page = tab.page
    album_id = album
    page.route("**/api/v1/albums/**", lambda route: route.abort("internetdisconnected"))
    open_page(page, stack, album_id, stack.token(album_id))
    expect(page.locator("#error")).to_contain_text("Network failure")
