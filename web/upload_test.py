"""``GET /upload_test``: the upload test page.

One server-rendered page (HTML, CSS and a small script, no build step) that reads an album with
the token the user gives, uploads photos from the browser straight to Cloudinary (or the
emulator) with the album's signed form, calls ``upload_done`` and shows the album filling in.

The HTML is the same for everyone: it embeds no token, album id or secret. The script reads the
album id and token from the URL (``?album=...&token=...``, as ``make run`` prints it) or from what
the user pastes, and talks to the API with ``Authorization: Bearer``.
"""
from __future__ import annotations

from urllib.parse import urlsplit

import cloudinary.utils
from flask import Blueprint, Response, current_app, render_template, send_from_directory

from common import cloudinary_client
from common.config import Settings

bp = Blueprint("upload_test", __name__)


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL: what a CSP source or a browser origin looks like."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def upload_origin() -> str:
    """Where the browser posts photos: the same URL the upload form carries."""
    return _origin(cloudinary.utils.cloudinary_api_url("upload", resource_type="auto"))


def delivery_origin() -> str:
    """Where thumbnails and previews are served from (signed URLs of authenticated assets)."""
    url, _ = cloudinary.utils.cloudinary_url("x", type="authenticated", sign_url=True)
    return _origin(url)


def content_security_policy() -> str:
    """Exactly what the page needs, from the Cloudinary config, and nothing else.

    - scripts and styles only from our own origin: no inline script or style, no eval;
    - ``connect-src``: our API (same origin) and the Upload API the browser posts photos to;
    - ``img-src``/``media-src``: our origin and the delivery host of thumbnails, posters and
      previews, and ``blob:`` for the local previews of files not sent yet;
    - no forms posted anywhere, no framing, no ``<base>``, no plugins.
    """
    upload, delivery = upload_origin(), delivery_origin()
    directives = {
        "default-src": ["'none'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        # blob: the local previews of the files chosen, shown before they are sent.
        "img-src": ["'self'", delivery, "blob:"],
        "media-src": [delivery, "blob:"],  # videos: the MP4 previews, and local previews
        "connect-src": ["'self'", upload],
        "form-action": ["'none'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(dict.fromkeys(sources))}" for name, sources in directives.items())


@bp.get("/upload_test")
def page() -> Response:
    settings: Settings = current_app.config["SETTINGS"]
    # The SDK's config is process-global: make sure it is this app's before reading hosts from it.
    cloudinary_client.ensure_configured(settings)
    response = Response(render_template("upload_test.html"), mimetype="text/html")
    response.headers["Content-Security-Policy"] = content_security_policy()
    # The page is often opened with ?token=... in its URL. With no-referrer, the requests for its
    # script, stylesheet and images never carry that URL in a Referer, even before the script
    # drops the token from the address bar (web/headers.py only sets a default it keeps).
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/favicon.ico")
def favicon() -> Response:
    """Browsers ask for it on every page: an icon, not a 404 in the console."""
    return send_from_directory(current_app.static_folder or "static", "favicon.ico",
                               mimetype="image/vnd.microsoft.icon", max_age=86400)
