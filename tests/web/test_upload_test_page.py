"""The upload test page, in process: it renders, its CSP allows exactly what it needs, and it
carries no secret and no inline script (the browser test in tests/e2e drives it for real)."""
from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from web import create_app

STATIC = Path(__file__).resolve().parents[2] / "web" / "static"
CLOUD_SECRET = "page-test-cloudinary-secret"


class PageParser(HTMLParser):
    """Collects what the CSP cares about: scripts, styles, inline handlers, forms."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.script_bodies: list[str] = []
        self.style_elements = 0
        self.inline_attrs: list[tuple[str, str]] = []
        self.ids: set[str] = set()
        self.inputs: list[dict[str, str | None]] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if attributes.get("id"):
            self.ids.add(str(attributes["id"]))
        for name, value in attrs:
            if name.startswith("on") or name == "style" or (value or "").strip().lower().startswith("javascript:"):
                self.inline_attrs.append((tag, name))
        if tag == "script":
            self.scripts.append(attributes)
            self._in_script = True
        elif tag == "style":
            self.style_elements += 1
        elif tag == "input":
            self.inputs.append(attributes)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.script_bodies.append(data)


def parse_csp(header: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0]] = words[1:]
    return directives


@pytest.fixture
def emulator_app(settings):
    """The development default: the emulator on loopback serves both upload and delivery."""
    return create_app(settings.with_overrides(
        cloudinary_url=f"cloudinary://123123123123:{CLOUD_SECRET}@demo"
        "?upload_prefix=http://127.0.0.1:9443&cname=127.0.0.1:9443&secure=false"
    ))


@pytest.fixture
def cloudinary_app(settings):
    """Real Cloudinary: uploads go to api.cloudinary.com, images come from res.cloudinary.com."""
    return create_app(settings.with_overrides(cloudinary_url=f"cloudinary://123123123123:{CLOUD_SECRET}@sadaasdasd?secure=true"))


def test_the_page_renders(emulator_app):
    response = emulator_app.test_client().get("/upload_test")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = PageParser()
    page.feed(response.get_data(as_text=True))
    # The hooks the browser test and other clients rely on.
    assert {"error", "images-count", "files", "images", "batch-progress"} <= page.ids
    files = next(i for i in page.inputs if i.get("id") == "files")
    assert files.get("type") == "file" and "multiple" in files


@pytest.mark.parametrize(
    ("app_fixture", "upload", "delivery"),
    [
        ("emulator_app", "http://127.0.0.1:9443", "http://127.0.0.1:9443"),
        ("cloudinary_app", "https://api.cloudinary.com", "https://res.cloudinary.com"),
    ],
)
def test_csp_names_exactly_self_and_the_cloudinary_origins(request, app_fixture, upload, delivery):
    app = request.getfixturevalue(app_fixture)
    response = app.test_client().get("/upload_test")
    csp = parse_csp(response.headers["Content-Security-Policy"])

    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval', no host
    assert csp["style-src"] == ["'self'"]
    assert csp["connect-src"] == ["'self'", upload]
    # blob: is the local preview of a file chosen and not sent yet (a URL of the tab's own memory).
    assert csp["img-src"] == ["'self'", delivery, "blob:"]
    assert csp["media-src"] == [delivery, "blob:"]  # video previews, and local ones
    assert csp["form-action"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"]
    named = {source for sources in csp.values() for source in sources if not source.startswith("'")}
    assert named == {upload, delivery, "blob:"}


def test_the_favicon_is_an_icon_not_a_404(emulator_app):
    response = emulator_app.test_client().get("/favicon.ico")
    assert response.status_code == 200 and response.mimetype == "image/vnd.microsoft.icon"
    assert response.data[:4] == b"\x00\x00\x01\x00"  # the ICO signature


@pytest.mark.parametrize(
    ("options", "delivery"),
    [
        ("cname=img.example.org&secure=false", "http://img.example.org"),
        ("private_cdn=true&secure_distribution=img.example.org&secure=true", "https://img.example.org"),
    ],
)
def test_the_csp_follows_the_configured_hosts(settings, options, delivery):
    """Whatever hosts the SDK builds URLs for, the CSP names: it asks the SDK, never guesses."""
    app = create_app(settings.with_overrides(
        cloudinary_url=f"cloudinary://k:{CLOUD_SECRET}@c?upload_prefix=https://upload.example.net:8443&{options}"
    ))
    csp = parse_csp(app.test_client().get("/upload_test").headers["Content-Security-Policy"])
    assert csp["connect-src"] == ["'self'", "https://upload.example.net:8443"]
    assert csp["img-src"] == ["'self'", delivery, "blob:"]
    assert csp["media-src"] == [delivery, "blob:"]


def test_the_page_carries_no_secret_and_no_token(emulator_app, settings):
    token = "eyJhbGciOiJIUzI1NiJ9.eyJ0ZXN0Ijp0cnVlfQ.c2lnbmF0dXJl"
    response = emulator_app.test_client().get(f"/upload_test?album=00100000123BB25&token={token}")
    html = response.get_data(as_text=True)
    assert settings.jwt_secret not in html
    assert CLOUD_SECRET not in html
    assert "123123123123" not in html  # not even the API key: the form comes from the API
    # The token (and album id) are read by the script from the URL, never echoed by the server.
    assert token not in html
    assert "00100000123BB25" not in html
    # The token-bearing URL must not leak through Referer, nor be cached.
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "no-store" in response.headers["Cache-Control"]
    assert response.headers["X-Frame-Options"] == "DENY"


def test_no_inline_script_or_style(emulator_app):
    html = emulator_app.test_client().get("/upload_test").get_data(as_text=True)
    page = PageParser()
    page.feed(html)
    assert page.scripts, "the page loads its script"
    assert all(script.get("src", "").startswith("/static/") for script in page.scripts)
    assert page.script_bodies == []
    assert page.style_elements == 0
    assert page.inline_attrs == []


def test_the_static_files_are_served(emulator_app):
    client = emulator_app.test_client()
    script = client.get("/static/upload_test.js")
    style = client.get("/static/upload_test.css")
    assert script.status_code == 200 and "javascript" in script.mimetype
    assert style.status_code == 200 and style.mimetype == "text/css"
    script.close()
    style.close()


def test_the_script_renders_data_as_text_only():
    """API data (names, EXIF, errors) reaches the DOM via textContent, never as HTML or code."""
    source = (STATIC / "upload_test.js").read_text()
    for risky in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert risky not in source
