"""Response headers of the seed, on every API response, and the request id/runtime."""
from __future__ import annotations

import re
import time
import uuid

from flask import Flask, Response, g, request

from common.logs import request_id_var
from web.auth import reissued_session

SECURITY_HEADERS = {
    "Cache-Control": "no-cache, no-store",
    "Pragma": "no-cache",
    "Expires": "Fri, 01 Jan 1990 00:00:00 GMT",
    "Vary": "Accept-Encoding",
    "P3P": 'CP="NOI ADM DEV PSAi COM NAV OUR OTRo STP IND DEM"',
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "X-XSS-Protection": "1; mode=block",
    "X-Download-Options": "noopen",
    "X-Permitted-Cross-Domain-Policies": "none",
    "Referrer-Policy": "origin-when-cross-origin, strict-origin-when-cross-origin",
}
JSON_CONTENT_TYPE = "application/json; charset=utf-8"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,128}$")


def request_id_for(incoming: str) -> str:
    """The caller's ``X-Request-Id`` when it is safe to echo, else a new one. Whole-matched: "$"
    alone passes a trailing "\n", which would split the header."""
    return incoming if _REQUEST_ID.fullmatch(incoming) else str(uuid.uuid4())


def runtime(started: float) -> str:
    """``X-Runtime``: seconds since ``started`` (``time.perf_counter``)."""
    return f"{time.perf_counter() - started:.6f}"


def install(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        g.request_id = request_id_for(request.headers.get("X-Request-Id", ""))
        request_id_var.set(g.request_id)

    @app.after_request
    def _headers(response: Response) -> Response:
        headers = response.headers
        # One pass over what the view set, then one extend: Werkzeug's per-header setdefault
        # rescans the list each time, and this runs on every request (the webhook's too).
        present = {name.lower() for name, _ in headers.items()}
        added = [(name, value) for name, value in SECURITY_HEADERS.items() if name.lower() not in present]
        if response.mimetype == "application/json" and response.content_type != JSON_CONTENT_TYPE:
            headers["Content-Type"] = JSON_CONTENT_TYPE
        session = reissued_session(response.status_code)
        if session:
            added.append(("X-token", session))
        added.append(("X-Request-Id", g.get("request_id") or str(uuid.uuid4())))
        started = g.get("started")
        if started is not None:
            added.append(("X-Runtime", runtime(started)))
        # Werkzeug's ``extend`` re-validates every value (no newline) one ``add`` at a time: a
        # third of this hook. These are our constants, or values we format
        # (uuid, a float, a JWT, a request id matched against _REQUEST_ID), so they go straight
        # into the list that Werkzeug keeps; ``extend`` only if a Werkzeug keeps them elsewhere.
        store = getattr(headers, "_list", None)
        if isinstance(store, list):
            store.extend(added)
        else:
            headers.extend(added)
        return response
