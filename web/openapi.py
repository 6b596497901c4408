"""The API contract (``web/openapi.yaml``): served as JSON, rendered as a reference page, and —
in tests only — held against every response the app sends.

- ``GET /api/v1/openapi.json``: the document, converted from the checked-in YAML once per process.
- ``GET /api/docs``: Swagger UI from the ``flask-swagger-ui`` package's files, served by this app
  (nothing is fetched from another host), under a Content-Security-Policy that allows only them.
- ``install_response_validation(app)``: with ``OPENAPI_VALIDATE_RESPONSES=1`` in the environment
  (the test suite sets it), every response is checked against the document after it is built:
  documented path, method and status; content type; JSON body (jsonschema, compiled once per
  schema, key order where a schema says ``x-key-order``); required and documented headers.
  A mismatch is logged, kept in ``VIOLATIONS`` and appended as a JSON line to the file named by
  ``OPENAPI_VIOLATIONS_FILE`` (so gunicorn subprocesses report too); ``tests/openapi_contract.py``
  fails the run on any. Production never installs it: no per-request cost on the webhook.
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
from functools import cache
from pathlib import Path
from typing import Any, Iterator

import yaml
from flask import Blueprint, Flask, Response, abort, request, send_from_directory, url_for
from markupsafe import escape

from common.tokens import redact

logger = logging.getLogger(__name__)

SPEC_PATH = Path(__file__).with_name("openapi.yaml")
_HERE_ASSETS = Path(__file__).with_name("static") / "docs"

bp = Blueprint("openapi", __name__)


@cache
def document() -> dict[str, Any]:
    """The contract as a dict (YAML anchors and merge keys expanded)."""
    with SPEC_PATH.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@cache
def _document_json() -> bytes:
    return json.dumps(document(), ensure_ascii=False, separators=(",", ":")).encode()


def _swagger_dist() -> Path | None:
    try:
        import flask_swagger_ui
    except ImportError:  # the page still renders; its assets answer 404
        return None
    return Path(flask_swagger_ui.__file__).with_name("dist")


#: The reference page's assets, by name: ours (the page's start-up script) and the packaged Swagger UI.
_ASSETS = {
    "docs.js": "local",
    "docs.css": "local",
    "swagger-ui-bundle.js": "swagger",
    "swagger-ui.css": "swagger",
    "favicon-32x32.png": "swagger",
    "favicon-16x16.png": "swagger",
}

#: Swagger UI draws its icons as ``data:`` SVGs; it needs no inline script or style and no eval
#: (tests/web/test_openapi.py renders it in Chromium and fails on any CSP violation). It fetches
#: only this app's document (and "Try it out" calls this API).
DOCS_CSP = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "font-src 'self'",
    "form-action 'none'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "object-src 'none'",
])


DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Album API reference</title>
  <link rel="icon" type="image/png" href="{assets}favicon-32x32.png" sizes="32x32">
  <link rel="stylesheet" href="{assets}swagger-ui.css">
  <link rel="stylesheet" href="{assets}docs.css">
  <script src="{assets}swagger-ui-bundle.js" defer></script>
  <script src="{assets}docs.js" defer></script>
</head>
<body>
  <div id="swagger-ui" data-spec-url="{spec}"></div>
  <noscript>The reference needs JavaScript; the document itself is at <a href="{spec}">{spec}</a>.</noscript>
</body>
</html>
"""


@bp.get("/api/v1/openapi.json")
def openapi_json() -> Response:
    return Response(_document_json(), content_type="application/json; charset=utf-8")


@bp.get("/api/docs")
def docs_page() -> Response:
    page = DOCS_PAGE.format(
        spec=escape(url_for("openapi.openapi_json")), assets=escape(url_for("openapi.docs_asset", filename="x")[:-1]),
    )
    response = Response(page, mimetype="text/html")
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response


@bp.get("/api/docs/assets/<path:filename>")
def docs_asset(filename: str) -> Response:
    source = _ASSETS.get(filename)
    directory = _HERE_ASSETS if source == "local" else _swagger_dist() if source == "swagger" else None
    if directory is None:
        abort(404)
    return send_from_directory(directory, filename, max_age=3600)


# -- response validation (tests) -----------------------------------------------------------------

#: Violations seen in this process (the pytest plugin reads it).
VIOLATIONS: list[dict[str, Any]] = []
_LOCK = threading.Lock()
_RULE_ARG = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")
_URN = "urn:album-api:openapi"
#: Statuses any path may answer before a view runs (routing errors, the body-size guard).
_ROUTING = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}
_JSON_CONTENT_TYPE = "application/json; charset=utf-8"


def openapi_path(rule: str) -> str:
    """``/api/v1/albums/<album_id>`` → ``/api/v1/albums/{album_id}`` (converters dropped)."""
    return _RULE_ARG.sub(lambda m: "{" + m.group(1) + "}", rule)


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


class ContractChecker:
    """Checks one response against the document. Schemas are compiled once, on first use."""

    def __init__(self, doc: dict[str, Any]) -> None:
        import referencing
        from jsonschema import Draft202012Validator, ValidationError, validators
        from referencing.jsonschema import DRAFT202012

        def key_order(validator: Any, enabled: Any, instance: Any, schema: dict[str, Any]) -> Iterator[ValidationError]:
            if not enabled or not isinstance(instance, dict):
                return
            documented = list(schema.get("properties", {}))
            actual = [key for key in instance if key in documented]
            expected = [key for key in documented if key in instance]
            if actual != expected:
                yield ValidationError(f"keys in the order {actual}, documented {expected}")

        self._validator_class = validators.extend(Draft202012Validator, {"x-key-order": key_order})
        self._registry = referencing.Registry().with_resource(_URN, DRAFT202012.create_resource(doc))
        self._doc = doc
        self._compiled: dict[str, Any] = {}

    def _resolve(self, node: dict[str, Any], pointer: str) -> tuple[dict[str, Any], str]:
        while "$ref" in node:
            pointer = node["$ref"]
            node = self._doc
            for part in pointer.lstrip("#/").split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
        return node, pointer

    def _validator(self, pointer: str) -> Any:
        validator = self._compiled.get(pointer)
        if validator is None:
            validator = self._validator_class({"$ref": _URN + pointer}, registry=self._registry)
            self._compiled[pointer] = validator
        return validator

    def check(self, path: str | None, method: str, status: int, headers: Any, body: bytes | None) -> list[str]:
        """Problems with the response, as sentences; empty when it matches the document."""
        if path is None:
            name = _ROUTING.get(status)
            if name is None:
                return [f"status {status} for a request that matched no route (only 404, 405, 413 are documented)"]
            return self._check_response(self._doc["components"]["responses"][name],
                                        _pointer("components", "responses", name), status, headers, body)
        item = self._doc["paths"].get(path)
        if item is None:
            return [f"undocumented path {path}"]
        if method == "HEAD":
            method, body = "GET", None
        operation = item.get(method.lower())
        if operation is None:
            if method == "OPTIONS" and status == 200:
                return []  # answered by Flask itself, with Allow
            if status in (405, 413):
                name = _ROUTING[status]
                return self._check_response(self._doc["components"]["responses"][name],
                                            _pointer("components", "responses", name), status, headers, body)
            return [f"undocumented method {method} {path}"]
        responses = operation["responses"]
        key = str(status) if str(status) in responses else f"{status // 100}XX" if f"{status // 100}XX" in responses else "default"
        if key not in responses:
            return [f"undocumented status {status} for {method} {path} (documented: {', '.join(responses)})"]
        return self._check_response(responses[key], _pointer("paths", path, method.lower(), "responses", key), status, headers, body)

    def _check_response(self, response: dict[str, Any], pointer: str, status: int, headers: Any, body: bytes | None) -> list[str]:
        response, pointer = self._resolve(response, pointer)
        problems: list[str] = []
        for name, header in (response.get("headers") or {}).items():
            header, header_pointer = self._resolve(header, f"{pointer}/headers/{name}")
            value = headers.get(name)
            if value is None:
                if header.get("required"):
                    problems.append(f"missing required header {name}")
                continue
            if "schema" in header:
                errors = list(self._validator(header_pointer + "/schema").iter_errors(value))
                problems += [f"header {name}: {error.message}" for error in errors]
        content = response.get("content") or {}
        content_type = headers.get("Content-Type", "")
        mimetype = content_type.split(";")[0].strip().lower()
        if not content:
            if body:
                problems.append(f"a body ({mimetype}) where the document has none")
            return problems
        if mimetype not in content:
            return problems + [f"content type {content_type!r}, documented {sorted(content)}"]
        if mimetype == "application/json":
            if content_type != _JSON_CONTENT_TYPE:
                problems.append(f"Content-Type {content_type!r}, documented {_JSON_CONTENT_TYPE!r}")
            if body is None:
                return problems
            try:
                instance = json.loads(body)
            except ValueError as exc:
                return problems + [f"body is not JSON: {exc}"]
            schema_pointer = f"{pointer}/content/{mimetype.replace('/', '~1')}/schema"
            for error in self._validator(schema_pointer).iter_errors(instance):
                where = "/".join(str(p) for p in error.absolute_path) or "(body)"
                problems.append(f"body {where}: {error.message[:300]}")
        return problems


@cache
def checker() -> ContractChecker:
    return ContractChecker(document())


def validation_enabled() -> bool:
    return os.environ.get("OPENAPI_VALIDATE_RESPONSES", "") in ("1", "true", "yes")


def check_and_record(path: str | None, method: str, status: int, headers: Any, body: bytes | None, url: str) -> None:
    """Check one response against the document; record what does not match."""
    problems = checker().check(path, method, status, headers, body)
    if problems:
        record_violation({  # logged and written to a file: no credential in either
            "method": method, "url": redact(url), "operation": path, "status": status, "problems": problems,
            "body": redact((body or b"")[:500].decode("utf-8", "replace")),
        })


def record_violation(entry: dict[str, Any]) -> None:
    with _LOCK:
        VIOLATIONS.append(entry)
        target = os.environ.get("OPENAPI_VIOLATIONS_FILE")
        if target:
            with open(target, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry) + "\n")
    logger.error("response does not match web/openapi.yaml: %s", json.dumps(entry))


def install_response_validation(app: Flask) -> None:
    """Check every response against the document, when ``OPENAPI_VALIDATE_RESPONSES`` (or the
    app's config of that name) says so. Runs on Flask's ``request_finished`` signal, i.e. on the
    final response, after every ``after_request`` hook has set its headers."""
    app.config.setdefault("OPENAPI_VALIDATE_RESPONSES", validation_enabled())
    if not app.config["OPENAPI_VALIDATE_RESPONSES"]:
        return
    from flask import request_finished

    checker()  # load and parse now: a broken document fails app creation, not a request
    logger.info("checking every response against %s; violations go to %s", SPEC_PATH.name,
                os.environ.get("OPENAPI_VIOLATIONS_FILE") or "the log")

    def validate(sender: Flask, response: Response, **_: Any) -> None:
        rule = request.url_rule.rule if request.url_rule is not None else None
        # Files are streamed (direct passthrough): their type is checked, their bytes are not read.
        body = None if response.direct_passthrough or response.is_streamed else response.get_data()
        check_and_record(openapi_path(rule) if rule else None, request.method, response.status_code, response.headers,
                         body, request.full_path.rstrip("?"))

    request_finished.connect(validate, app, weak=False)
