"""The OpenAPI contract (web/openapi.yaml): valid OpenAPI 3.1, one-to-one with the app's routes,
served as JSON and as a reference page with local assets only, and its response checker really
catches drift. (Every response of the whole suite goes through that checker: tests/openapi_contract.py.)"""
from __future__ import annotations

import base64
import json
import random
import re
import time
from html.parser import HTMLParser

import pytest
from flask import request_finished
from openapi_spec_validator import validate

from common import tokens
from tests.conftest import SEED_ALBUM, SEED_ORG, SEED_USER, TEST_JWT_SECRET, row_counts
from tests.seed import SEED_RESPONSE_HEADERS
from web import albums, create_app, openapi

#: The seed's response headers (SEED-album-api.md), less Content-Length.
SEED_HEADERS = {k: v for k, v in SEED_RESPONSE_HEADERS.items() if k != "Content-Length"}
UPLOAD_DONE = "/api/v1/albums/{album_id}/upload_done"


@pytest.fixture
def app(settings):
    return create_app(settings)


@pytest.fixture
def client(app):
    return app.test_client()


def session(*abilities: str, album: str = SEED_ALBUM) -> dict[str, str]:
    token = tokens.issue_session(SEED_USER, {album: abilities}, TEST_JWT_SECRET, 3600, now=int(time.time()))
    return {"Authorization": f"Bearer {token}"}


def seed_body() -> bytes:
    example = openapi.document()["paths"][UPLOAD_DONE]["post"]["responses"]["200"]["content"]["application/json"]["examples"]["seed"]
    return json.dumps(example["value"], separators=(",", ":")).encode()


# -- the document -------------------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1():
    doc = openapi.document()
    assert doc["openapi"].startswith("3.1.")
    validate(doc)  # openapi-spec-validator picks the 3.1 validator from the version


def test_the_document_has_every_route_of_the_app_and_nothing_else(app):
    """A new endpoint cannot skip the contract: the routes and the documented operations are one set."""
    doc = openapi.document()
    routes = {
        (openapi.openapi_path(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, item in doc["paths"].items() for method in item if method != "parameters"}
    assert routes == documented


def test_the_seed_response_is_the_example_of_upload_done_and_matches_its_schema():
    body = seed_body()
    assert len(body) == 963  # the seed's Content-Length: the example is the seed, byte for byte
    assert openapi.checker().check(UPLOAD_DONE, "POST", 200, SEED_HEADERS, body) == []


def test_every_error_response_documents_the_error_shape_and_its_headers():
    doc = openapi.document()
    responses = doc["components"]["responses"]
    for name, response in responses.items():
        schema = response["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Error"}, name
        assert {"X-Request-Id", "X-Runtime"} <= set(response["headers"]), name
        example = response["content"]["application/json"]["example"]
        assert example["error"]["code"] in doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
    assert "WWW-Authenticate" in responses["Unauthorized"]["headers"]
    assert "WWW-Authenticate" in responses["WebhookUnauthorized"]["headers"]
    assert "Retry-After" in responses["BrokerUnavailable"]["headers"]
    assert "Allow" in responses["MethodNotAllowed"]["headers"]
    schemes = doc["components"]["securitySchemes"]
    assert schemes["TokenAuth"] == {**schemes["TokenAuth"], "type": "apiKey", "in": "header", "name": "Authorization"}
    assert schemes["BearerAuth"]["scheme"] == "bearer"
    assert {schemes[n]["name"] for n in ("NotificationToken", "CloudinarySignature", "CloudinaryTimestamp")} == {
        "token", "X-Cld-Signature", "X-Cld-Timestamp"}


# -- serving it ---------------------------------------------------------------------------------


def test_the_document_is_served_as_json(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.get_json() == openapi.document()
    assert list(response.get_json()["paths"]) == list(openapi.document()["paths"])  # the file's order


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        for name in ("src", "href"):
            if attributes.get(name) and tag in ("script", "link"):
                self.urls.append(str(attributes[name]))
        self._in_script = tag == "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1


def test_the_reference_page_uses_local_assets_only_under_its_own_csp(client):
    page = client.get("/api/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "unsafe-eval" not in csp and "http" not in csp
    assert page.headers["X-Frame-Options"] == "DENY"  # web/headers.py still adds the rest
    html = page.get_data(as_text=True)
    parser = _Assets()
    parser.feed(html)
    assert parser.inline_scripts == 0
    assert parser.urls and all(url.startswith("/api/docs/assets/") for url in parser.urls)
    assert "data-spec-url=\"/api/v1/openapi.json\"" in html
    for url in parser.urls:
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.mimetype in ("text/javascript", "application/javascript", "text/css", "image/png"), url
    start = client.get("/api/docs/assets/docs.js").get_data(as_text=True)
    assert "validatorUrl: null" in start  # Swagger UI would otherwise load a badge from the internet
    assert client.get("/api/docs/assets/../openapi.py").status_code == 404
    assert client.get("/api/docs/assets/oauth2-redirect.html").status_code == 404


# -- the edge's validation: a violation is 400 and names the field ------------------------------


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/images?limit=0", "limit"), ("/images?limit=201", "limit"), ("/images?limit=x", "limit"),
        ("/images?limit=%C2%B2", "limit"), ("/images?cursor=%21%21", "cursor"), ("/images?cursor=YWJj", "cursor"),
        ("/images?cursor=MTI%3D", "cursor"), ("/images?cursor=MTJ", "cursor"), ("/images?cursor=MTI%0A", "cursor"),
        ("/duplicates?threshold=65", "threshold"), ("/duplicates?threshold=8", "threshold"),
        ("/duplicates?limit=0", "limit"), ("/duplicates?cursor=YWJj", "cursor"), ("/duplicates?threshold=-1", "threshold"),
        ("/duplicates?threshold=%D9%A1", "threshold"),
    ],
)
def test_query_constraints_are_400_naming_the_field(client, seed_album, path, field):
    response = client.get(f"/api/v1/albums/{SEED_ALBUM}{path}", headers=session("read"))
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_parameter"
    assert f"'{field}'" in response.get_json()["error"]["message"]


def test_the_documented_cursor_pattern_is_exactly_what_the_server_accepts():
    """Schemathesis's positive_data_acceptance holds the server to it; here, the language itself:
    the unpadded URL-safe base64 of 1 to 18 ASCII digits, nothing more."""
    cursor = next(p for p in openapi.document()["paths"]["/api/v1/albums/{album_id}/images"]["get"]["parameters"]
                  if p["name"] == "cursor")
    assert cursor["schema"]["pattern"] == albums.CURSOR_PATTERN
    pattern = re.compile(albums.CURSOR_PATTERN)

    def encode(digits: str) -> str:
        return base64.urlsafe_b64encode(digits.encode()).decode().rstrip("=")

    rng = random.Random(5)
    for _ in range(5000):
        assert pattern.fullmatch(encode("".join(rng.choice("0123456789") for _ in range(rng.randint(1, 18)))))
    assert not pattern.fullmatch(encode("1" * 19))
    alphabet = "MNODTjzAEIMQUYcgkwxyz012345QgwTI"
    for _ in range(20000):
        candidate = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 25)))
        try:
            decoded = base64.urlsafe_b64decode(candidate + "=" * (-len(candidate) % 4)).decode("ascii")
            canonical = decoded.isdigit() and len(decoded) <= 18 and encode(decoded) == candidate
        except ValueError:
            canonical = False
        assert bool(pattern.fullmatch(candidate)) == canonical, candidate


def test_pages_follow_next_cursor_to_every_image(client, seed_album):
    from common import db
    from common.models import Image

    with db.session_scope() as db_session:
        db_session.add_all(Image(album_id=SEED_ALBUM, public_id=f"page-{n}") for n in range(5))
    seen, cursor = [], None
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(f"/api/v1/albums/{SEED_ALBUM}/images{query}", headers=session("read")).get_json()
        seen += [image["public_id"] for image in body["images"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert re.fullmatch(albums.CURSOR_PATTERN, cursor)
    assert seen == [f"page-{n}" for n in range(5)]


@pytest.mark.parametrize("image_id", ["abc", "0", "1" * 19, "%C2%B2", "-1", "1.5"])
def test_a_malformed_image_id_is_400_naming_it_and_deletes_nothing(client, seed_album, image_id):
    before = row_counts()
    response = client.delete(f"/api/v1/albums/{SEED_ALBUM}/images/{image_id}", headers=session("manage"))
    assert response.status_code == 400, response.data
    assert "'image_id'" in response.get_json()["error"]["message"]
    assert row_counts() == before


@pytest.mark.parametrize(
    ("query", "body", "code", "field"),
    [
        ("?mode=", None, "invalid_parameter", "'mode'"),
        ("?mode=some", None, "invalid_parameter", "'mode'"),
        ("", {"mode": None}, "invalid_parameter", "'mode'"),
        ("", {"mode": ""}, "invalid_parameter", "'mode'"),
        ("", {"mode": ["all"]}, "invalid_parameter", "'mode'"),
        ("", [1], "invalid_json", "body"),
    ],
)
def test_reprocess_mode_is_checked_in_query_and_body(client, seed_album, query, body, code, field):
    kwargs = {"json": body} if body is not None else {}
    response = client.post(f"/api/v1/albums/{SEED_ALBUM}/reprocess{query}", headers=session("manage"), **kwargs)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == code
    assert field in response.get_json()["error"]["message"]


def test_reprocess_defaults_to_missing(client, seed_album):
    for kwargs in ({}, {"json": {}}, {"json": {"mode": "all"}}):
        response = client.post(f"/api/v1/albums/{SEED_ALBUM}/reprocess", headers=session("manage"), **kwargs)
        assert response.status_code == 202
        assert response.get_json()["mode"] == kwargs.get("json", {}).get("mode", "missing")


# -- the response checker -----------------------------------------------------------------------


def test_validation_is_off_unless_asked_so_production_pays_nothing(settings, monkeypatch):
    monkeypatch.setenv("OPENAPI_VALIDATE_RESPONSES", "0")
    app = create_app(settings)
    assert app.config["OPENAPI_VALIDATE_RESPONSES"] is False
    assert not request_finished.has_receivers_for(app)


def test_the_suite_validates_responses(app):
    assert app.config["OPENAPI_VALIDATE_RESPONSES"] is True
    assert request_finished.has_receivers_for(app)


def _broken(**changes: object) -> bytes:
    body = json.loads(seed_body())
    body.update(changes)
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("path", "method", "status", "headers", "body", "problem"),
    [
        (UPLOAD_DONE, "POST", 200, SEED_HEADERS, json.dumps(dict(reversed(list(json.loads(seed_body()).items())))).encode(), "order"),
        (UPLOAD_DONE, "POST", 200, SEED_HEADERS, _broken(extra=1), "Additional properties"),
        (UPLOAD_DONE, "POST", 200, SEED_HEADERS, _broken(images_count="0"), "images_count"),
        (UPLOAD_DONE, "POST", 200, SEED_HEADERS, _broken(upload_form=None), "upload_form"),
        (UPLOAD_DONE, "POST", 200, {k: v for k, v in SEED_HEADERS.items() if k != "X-token"}, seed_body(), "X-token"),
        (UPLOAD_DONE, "POST", 200, {**SEED_HEADERS, "X-Runtime": "fast"}, seed_body(), "X-Runtime"),
        (UPLOAD_DONE, "POST", 200, {**SEED_HEADERS, "Content-Type": "application/json"}, seed_body(), "Content-Type"),
        (UPLOAD_DONE, "POST", 200, {**SEED_HEADERS, "Content-Type": "text/html"}, b"<p>", "content type"),
        (UPLOAD_DONE, "POST", 418, SEED_HEADERS, seed_body(), "undocumented status"),
        (UPLOAD_DONE, "PATCH", 200, SEED_HEADERS, seed_body(), "undocumented method"),
        ("/api/v1/secret", "GET", 200, SEED_HEADERS, b"{}", "undocumented path"),
        (None, "GET", 200, SEED_HEADERS, b"{}", "matched no route"),
        ("/api/v1/albums/{album_id}/images", "GET", 401, SEED_HEADERS, b'{"error":{"code":"unauthorized","message":"x"}}',
         "WWW-Authenticate"),
        ("/api/v1/albums/{album_id}/images", "GET", 400, SEED_HEADERS, b'{"error":{"message":"x","code":"invalid_parameter"}}',
         "order"),
    ],
)
def test_the_checker_catches_drift(path, method, status, headers, body, problem):
    problems = openapi.checker().check(path, method, status, headers, body)
    assert any(problem in p for p in problems), problems


def test_a_drifted_live_response_is_recorded(app, tmp_path, monkeypatch):
    """End to end through the hook: an undocumented route answers, the violation is written."""
    target = tmp_path / "violations.jsonl"
    monkeypatch.setenv("OPENAPI_VIOLATIONS_FILE", str(target))
    app.add_url_rule("/api/v1/undocumented", "undocumented", lambda: {"ok": True})
    before = len(openapi.VIOLATIONS)
    assert app.test_client().get("/api/v1/undocumented").status_code == 200
    recorded = [json.loads(line) for line in target.read_text().splitlines()]
    assert recorded and recorded[0]["operation"] == "/api/v1/undocumented"
    assert any("undocumented path" in p for p in recorded[0]["problems"])
    del openapi.VIOLATIONS[before:]


def test_session_and_request_headers_are_documented_on_live_answers(client, seed_album):
    response = client.get(f"/api/v1/albums/{SEED_ALBUM}", headers={**session("read"), "X-Request-Id": "req-12345678"})
    assert response.headers["X-Request-Id"] == "req-12345678"
    assert re.fullmatch(r"[0-9]+\.[0-9]{6}", response.headers["X-Runtime"])
    assert response.headers["X-token"].count(".") == 2
    assert openapi.checker().check("/api/v1/albums/{album_id}", "GET", 200, response.headers, response.data) == []
    assert list(response.get_json()) == ["id", "public_id", "images_count", "views_count", "upload_form", "organization_id",
                                         "thumbnails"]
    assert response.get_json()["organization_id"] == SEED_ORG


@pytest.mark.parametrize("timestamp", ["\u00b2", "9" * 400, "9" * 5000, "1e9", " 1"])
def test_a_malformed_webhook_timestamp_is_401_not_500(settings, seed_album, timestamp):
    """Found by fuzzing: "²" passed str.isdigit() but not int(); a huge number overflowed float."""
    app = create_app(settings.with_overrides(cloudinary_url="cloudinary://key:secret@cloud"))
    token = tokens.notification_token(SEED_USER, SEED_ALBUM, SEED_ORG, TEST_JWT_SECRET, 14400)
    response = app.test_client().post(f"/api/v1/cloudinary?token={token}", data=b"{}", content_type="application/json",
                                      headers={"X-Cld-Timestamp": timestamp, "X-Cld-Signature": "0" * 40})
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"


def test_a_reprocess_body_is_checked_even_when_the_query_decides(client, seed_album):
    url = f"/api/v1/albums/{SEED_ALBUM}/reprocess?mode=all"
    assert client.post(url, headers=session("manage"), json={"mode": {}}).status_code == 400
    assert client.post(url, headers=session("manage"), json={"mode": "missing"}).get_json()["mode"] == "all"


def test_the_reference_page_renders_in_chromium_with_no_csp_violation_and_no_outside_request(app):
    """The CSP is set for Swagger UI's real needs: render the page in headless Chromium (Debian's
    package, as the upload page's browser test) and watch the console and every request."""
    import os
    import threading
    from pathlib import Path

    from werkzeug.serving import make_server

    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail("chromium not installed: apt-get install chromium")
        pytest.skip("chromium not installed: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{server.server_port}"
    problems: list[str] = []
    requested: list[str] = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(chromium), headless=True,
                                         args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                               "--disable-background-networking", "--disable-component-update"])
            try:
                page = browser.new_page()
                page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
                page.on("pageerror", lambda exc: problems.append(str(exc)))
                page.on("request", lambda req: requested.append(req.url))
                page.goto(origin + "/api/docs")
                page.wait_for_selector(".opblock", timeout=20_000)
                operations = page.locator(".opblock").count()
                # Open the seed's operation: its example, schemas and syntax highlighting render too.
                page.locator("#operations-albums-uploadDone .opblock-summary").click()
                page.wait_for_selector("#operations-albums-uploadDone .highlight-code, #operations-albums-uploadDone .microlight",
                                       timeout=10_000)
                page.locator(".models-control, .models h4").first.click()
                page.wait_for_timeout(500)
                title = page.locator(".info .title").inner_text()
            finally:
                browser.close()
    finally:
        server.shutdown()
    assert problems == []
    documented = sum(1 for item in openapi.document()["paths"].values() for method in item if method != "parameters")
    assert operations == documented  # every documented operation is on the page
    assert "Album upload pipeline API" in title
    assert requested and all(url.startswith(origin) or url.startswith("data:") for url in requested), requested
