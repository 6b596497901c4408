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
        # The page's probe of GET /changes answers 404 on a server without that endpoint, and
        # the page then re-reads /images: Chromium logs that 404, which is no fault of the page.
        url = msg.location.get("url", "")
        if msg.type == "error" and not (re.search(r"/api/v1/albums/[^/]+/changes$", url) and "404" in msg.text):
            self.problems.append(f"console: {msg.text} ({url})")


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
    # (The README's screenshot is the mixed batch's, below.)


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


MEDIA = ROOT / "tests" / "fixtures" / "media"


class HeldUploads:
    """Intercepts the browser's uploads to the emulator: those of the named files are held (not
    sent on) until released; those named in ``fail`` fail that many times as if the network
    were cut. Everything else goes straight through."""

    def __init__(self, page: Any, upload_url: str, hold: tuple[str, ...] = (), fail: dict[str, int] | None = None) -> None:
        self.hold = set(hold)
        self.fail = dict(fail or {})
        self.held: dict[str, Any] = {}
        self.attempts: dict[str, int] = {}
        page.route(upload_url, self._handle)

    @staticmethod
    def _file_name(request: Any) -> str:
        match = re.search(rb'filename="([^"]+)"', request.post_data_buffer or b"")
        return match.group(1).decode() if match else ""

    def _handle(self, route: Any) -> None:
        name = self._file_name(route.request)
        self.attempts[name] = self.attempts.get(name, 0) + 1
        if self.fail.get(name, 0) > 0:
            self.fail[name] -= 1
            route.abort("internetdisconnected")
        elif name in self.hold:
            self.held[name] = route  # answered by release(), or never (a cancelled upload)
        else:
            route.continue_()

    def release(self, name: str) -> None:
        self.hold.discard(name)
        route = self.held.pop(name, None)
        if route is not None:
            route.continue_()


def loaded_images(page: Any, selector: str) -> int:
    return page.evaluate(
        "(sel) => [...document.querySelectorAll(sel)].filter(img => img.complete && img.naturalWidth > 0).length",
        selector)


def test_a_batch_of_photos_a_heic_and_a_video_shows_each_item_live_and_survives_a_refresh(
        stack: Any, tab: Tab, album: str) -> None:
    """Issue 14's bar: six photos, a HEIC and a video sent from the page: every item ready with
    its thumbnail (the video with its poster and duration), file names shown, the first
    thumbnail on screen while the batch is still sending, and a refresh keeps the album open."""
    page = tab.page
    token = stack.token(album)
    files = sorted(FIXTURES.glob("*.jpg")) + [MEDIA / "astronaut.heic", MEDIA / "clip.mp4"]
    names = [f.name for f in files]
    open_page(page, stack, album, token)
    expect(page.locator("input[type=file]#files")).to_be_enabled()
    # The video is sent last and held on its way: the batch is still sending while the photos
    # before it go through the pipeline.
    uploads = HeldUploads(page, stack.album(album)["upload_form"]["url"], hold=("clip.mp4",))

    page.set_input_files("input[type=file]#files", [str(f) for f in files])

    # Local previews before anything is ready: the six JPEGs drawn from the files themselves (a
    # HEIC is no format Chromium draws; it keeps the placeholder), the video as a video.
    page.wait_for_function("() => [...document.querySelectorAll('.upload .local-preview img')]"
                           ".filter(img => img.complete && img.naturalWidth > 0).length === 6", timeout=10_000)
    expect(page.locator(".upload .local-preview video")).to_have_count(1)

    # The first thumbnail appears while the video's upload has not finished.
    page.wait_for_function("() => [...document.querySelectorAll('.image-card img.thumb')]"
                           ".some(img => !img.hidden && img.complete && img.naturalWidth > 0)",
                           timeout=PIPELINE_TIMEOUT_MS)
    clip_row = page.locator(".upload", has=page.locator(".file-name", has_text="clip.mp4"))
    expect(clip_row).to_have_attribute("data-state", "sending")
    assert "clip.mp4" in uploads.held
    expect(page.locator("#batch-text")).not_to_contain_text("8 of 8")
    expect(page.locator("#poll-state")).not_to_have_text("Up to date.")  # not while a file is sending
    # The count shown never contradicts the statuses beside it (both are the status endpoint's).
    counts = [int(n) for n in re.findall(r"\d+", page.locator("#album-status").inner_text())]
    assert int(page.locator("#images-count").inner_text()) == sum(counts)
    uploads.release("clip.mp4")

    # Every item ready, with its thumbnail loaded and its file name.
    thumbs = page.locator(".image-card[data-status=ready] img.thumb:not([hidden])")
    expect(thumbs).to_have_count(8, timeout=PIPELINE_TIMEOUT_MS)
    page.wait_for_function("() => [...document.querySelectorAll('.image-card img.thumb')]"
                           ".filter(img => img.complete && img.naturalWidth > 0).length === 8", timeout=30_000)
    expect(page.locator("#poll-state")).to_have_text("Up to date.", timeout=PIPELINE_TIMEOUT_MS)
    expect(page.locator("#images-count")).to_have_text("8")
    expect(page.locator("#count-note")).to_have_text("")
    expect(page.locator(".upload[data-state=done]")).to_have_count(8)
    shown = sorted(page.locator(".image-card .name").all_inner_texts())
    assert shown == sorted(names)

    screenshot = README_SCREENSHOT if os.environ.get("UPDATE_SCREENSHOT") == "1" else stack.tmp / "upload_test.png"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size < 700_000

    # The video: its poster as thumbnail and on the player, its duration, playable in place.
    video = page.locator('.image-card[data-resource-type=video]')
    expect(video).to_have_count(1)
    expect(video).to_have_attribute("data-file-name", "clip.mp4")
    expect(video.locator(".duration")).to_have_text("0:03")
    player = video.locator("video.player")
    expect(video.locator("img.preview")).to_have_attribute("src", video.locator("img.thumb").get_attribute("src"))
    expect(player).to_be_hidden()  # nothing of the video itself is fetched until it is played
    video.locator("button.play").click()
    expect(player).to_be_visible()
    assert player.get_attribute("poster") == video.locator("img.thumb").get_attribute("src")
    assert "/video/" in player.get_attribute("src") and player.get_attribute("src").endswith(".mp4")
    duration = player.evaluate("""(v) => new Promise((resolve, reject) => {
        if (v.readyState >= 1) return resolve(v.duration);
        v.addEventListener('loadedmetadata', () => resolve(v.duration), {once: true});
        v.addEventListener('error', () => reject(new Error('cannot play: ' + (v.error && v.error.code))), {once: true});
    })""")
    assert abs(duration - 3.0) < 0.1
    heic = page.locator('.image-card[data-file-name="astronaut.heic"]')
    expect(heic.locator(".swatch").first).to_be_visible()  # analysed like a JPEG

    # The batch said it had a video, so reconciles list the album's videos too.
    assert any(url.endswith(f"/api/v1/albums/{album}/upload_done?videos=1") for method, url in tab.requests
               if method == "POST")
    assert tab.problems == []

    # A refresh keeps the album open: the tab kept the token (sessionStorage), not the URL.
    assert "token=" not in page.url
    page.reload()
    expect(page.locator("#album-id")).to_have_text(album)
    expect(page.locator(".image-card[data-status=ready]")).to_have_count(8, timeout=30_000)
    expect(page.locator("#images-count")).to_have_text("8")
    # File names now come from the API (the original names Cloudinary reported), not the page's memory.
    assert sorted(page.locator(".image-card .name").all_inner_texts()) == sorted(names)
    expect(page.locator("#error")).to_be_hidden()
    assert tab.problems == []


def test_cancel_retry_automatic_retries_and_a_file_already_there(stack: Any, tab: Tab, album: str) -> None:
    page = tab.page
    open_page(page, stack, album, stack.token(album))
    expect(page.locator("input[type=file]#files")).to_be_enabled()
    # coffee.jpg meets two network failures (retried by itself, with backoff); rocket.jpg is
    # held on its way, cancelled by the user, then retried by hand.
    uploads = HeldUploads(page, stack.album(album)["upload_form"]["url"], hold=("rocket.jpg",),
                          fail={"coffee.jpg": 2})
    page.set_input_files("input[type=file]#files", [str(FIXTURES / "coffee.jpg"), str(FIXTURES / "rocket.jpg")])

    coffee = page.locator(".upload", has=page.locator(".file-name", has_text="coffee.jpg"))
    rocket = page.locator(".upload", has=page.locator(".file-name", has_text="rocket.jpg"))
    expect(coffee).to_have_attribute("data-state", "retrying")
    expect(coffee.locator(".upload-state")).to_contain_text("retrying in")
    expect(coffee).to_have_attribute("data-state", "done", timeout=20_000)
    assert uploads.attempts["coffee.jpg"] == 3

    expect(rocket).to_have_attribute("data-state", "sending")
    rocket.locator("button.cancel").click()
    expect(rocket).to_have_attribute("data-state", "cancelled")
    expect(rocket.locator("button.retry")).to_be_visible()
    expect(page.locator('.image-card[data-file-name="coffee.jpg"][data-status=ready]')).to_have_count(
        1, timeout=PIPELINE_TIMEOUT_MS)
    expect(page.locator('.image-card[data-file-name="rocket.jpg"]')).to_have_count(0)

    uploads.hold.discard("rocket.jpg")  # the next attempt goes through
    rocket.locator("button.retry").click()
    expect(rocket).to_have_attribute("data-state", "done", timeout=20_000)
    expect(page.locator('.image-card[data-file-name="rocket.jpg"][data-status=ready]')).to_have_count(
        1, timeout=PIPELINE_TIMEOUT_MS)

    # The same file again: reported as already there, and the album keeps one copy.
    page.set_input_files("input[type=file]#files", [str(FIXTURES / "coffee.jpg")])
    again = page.locator(".upload").last
    expect(again).to_have_attribute("data-state", "duplicate", timeout=20_000)
    expect(again.locator(".upload-state")).to_contain_text("already in the album")
    expect(page.locator("#poll-state")).to_have_text("Up to date.", timeout=PIPELINE_TIMEOUT_MS)
    expect(page.locator("#images-count")).to_have_text("2")
    expect(page.locator(".image-card")).to_have_count(2)
    # Chromium logs the two network failures this test caused; nothing else went wrong.
    assert [p for p in tab.problems if "ERR_INTERNET_DISCONNECTED" not in p] == []
    assert len(tab.problems) == 2


def test_a_refused_token_clears_the_album_from_the_screen(stack: Any, tab: Tab, album: str) -> None:
    page = tab.page
    # The page's first poll (made with the valid token) is held on its way and answered only
    # after the refusal: its late answer, which re-issues the old session, must not bring it back.
    held: list[Any] = []
    page.route("**/changes*", lambda route: route.continue_() if held else held.append(route))
    open_page(page, stack, album, stack.token(album))
    expect(page.locator("#images-count")).to_have_text("0")
    expect(page.locator("#album-id")).to_have_text(album)
    expired = tokens.issue_session("e2e-user", {album: ("image_upload",)}, TEST_JWT_SECRET, 14400,
                                   now=int(time.time()) - 20000)
    page.wait_for_timeout(500)
    assert held, "the page made no poll to hold"
    page.fill("#token", expired)
    page.click("#access button[type=submit]")
    expect(page.locator("#error")).to_contain_text("401")
    with page.expect_response("**/changes*"):
        held[0].continue_()
    expect(page.locator("#album-id")).to_have_text("–")
    expect(page.locator("#images-count")).to_have_text("–")
    expect(page.locator("#album-status")).to_have_text("–")
    # The refused token is not kept for the tab: a refresh does not reopen anything with it.
    page.reload()
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator("#album-id")).to_have_text("–")


def test_the_favicon_is_served(stack: Any, tab: Tab) -> None:
    response = tab.page.goto(f"{stack.web_url}/favicon.ico")
    assert response.status == 200 and response.headers["content-type"] == "image/vnd.microsoft.icon"


def test_the_page_polls_changes_and_a_poll_with_nothing_new_is_one_small_request(stack: Any, tab: Tab, album: str) -> None:
    """The page reads the whole list once, then only ``GET /changes?since=``; while an upload is
    held on its way (the page keeps polling, nothing changes) a poll asks for nothing else —
    not ``/status``, which counts over the whole album."""
    page = tab.page
    uploads = HeldUploads(page, stack.album(album)["upload_form"]["url"], hold=("rocket.jpg",))
    open_page(page, stack, album, stack.token(album))
    expect(page.locator("input[type=file]#files")).to_be_enabled()
    page.set_input_files("input[type=file]#files", [str(FIXTURES / "chelsea.jpg"), str(FIXTURES / "rocket.jpg")])
    expect(page.locator(".image-card[data-status=ready] img.thumb:not([hidden])")).to_have_count(
        1, timeout=PIPELINE_TIMEOUT_MS)
    page.wait_for_timeout(1500)  # chelsea is in: the polls from here on find nothing new
    mark = len(tab.requests)
    page.wait_for_timeout(3500)  # about three polls while rocket.jpg is still held
    quiet = [url.split("/api/v1/albums/", 1)[-1] for method, url in tab.requests[mark:] if "/api/v1/albums/" in url]
    uploads.release("rocket.jpg")
    expect(page.locator(".image-card[data-status=ready] img.thumb:not([hidden])")).to_have_count(
        2, timeout=PIPELINE_TIMEOUT_MS)
    expect(page.locator("#poll-state")).to_have_text("Up to date.", timeout=PIPELINE_TIMEOUT_MS)
    assert len(quiet) >= 2 and all(url.startswith(f"{album}/changes?since=") for url in quiet), quiet
    full_reads = [url for method, url in tab.requests if method == "GET" and "/images?" in url]
    assert len(full_reads) == 1  # the first look; every later one asked for changes
    assert any(method == "GET" and "/status" in url for method, url in tab.requests[mark:])  # rocket's arrival
    assert tab.problems == []


def test_the_page_does_not_stop_watching_while_a_card_still_shows_work(stack: Any, tab: Tab, album: str) -> None:
    """The page reads ``/changes``, then ``/status``. A photo that becomes ready between the two
    reads is counted ready by ``/status`` while its card, from ``/changes``, still says
    processing: the page must poll on until the card agrees, not stop "up to date" with a card
    stuck at processing. Staged for certain: the first ``/changes`` answer that shows the photo
    still in progress is held until the photo is ready on the server, then delivered as it was."""
    page = tab.page
    held: list[str] = []

    def stale_changes(route: Any) -> None:
        response = route.fetch()
        body = response.json()
        if not held and any(image["status"] in ("received", "processing") for image in body.get("images", [])):
            deadline = time.monotonic() + PIPELINE_TIMEOUT_MS / 1000
            while time.monotonic() < deadline and not any(
                    image["status"] == "ready" for image in stack.images(album)):
                time.sleep(0.05)
            held.append(route.request.url)
        route.fulfill(response=response)

    page.route(lambda url: "/changes?since=" in url, stale_changes)
    stack.emulator.set_faults(latency_ms=1500)  # the thumbnails take long enough to be seen in progress
    open_page(page, stack, album, stack.token(album))
    expect(page.locator("input[type=file]#files")).to_be_enabled()
    page.set_input_files("input[type=file]#files", [str(FIXTURES / "chelsea.jpg")])
    expect(page.locator(".image-card[data-status=ready]")).to_have_count(1, timeout=PIPELINE_TIMEOUT_MS)
    expect(page.locator("#poll-state")).to_have_text("Up to date.", timeout=PIPELINE_TIMEOUT_MS)
    assert held, "no /changes answer showed the photo in progress: the race was not staged"
    assert tab.problems == []
