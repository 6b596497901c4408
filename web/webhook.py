"""``POST /api/v1/cloudinary?token=...``: Cloudinary's notification for every upload.

This is the product's hottest path: it verifies and enqueues, nothing more — no database
write, no Cloudinary call. The worker does the rest.

A valid notification is answered by ``NotificationFastPath``, a WSGI layer in front of Flask:
Flask's request context, routing, hooks and response object cost about as much CPU as the
verification and the publish together (bench/webhook_ack.py). Everything else — every refusal,
every error, a chunked or oversized body, a broker that is down — falls through to the Flask view
below, which runs the same ``verify`` and answers as every other endpoint does. So both paths
share one verification, and only the 200 is answered outside Flask (its headers are the ones
Flask's path sets: tests/web/test_webhook_fast_path.py compares them)."""
from __future__ import annotations

import io
import logging
import time
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl

from flask import Blueprint, Flask, Response, current_app, request

from common import cloudinary_client, tokens
from common.config import Settings
from common.enqueue import BrokerUnavailable, publish_fast
from common.logs import request_id_var
from web.body import MAX_BODY, json_object, read_body
from web.errors import ApiError
from web.headers import JSON_CONTENT_TYPE, SECURITY_HEADERS, request_id_for, runtime

bp = Blueprint("webhook", __name__, url_prefix="/api/v1")
PATH = "/api/v1/cloudinary"
logger = logging.getLogger(__name__)

#: What each notification type becomes; anything else is acknowledged and logged.
_TASK_FOR = {"upload": "album.ingest", "delete": "album.remove_deleted", "eager": "album.record_eager"}
#: The answer, built once: ``jsonify`` would serialise the same dict on every request.
_ACCEPTED = b'{"status":"accepted"}'
#: Where the fast path leaves a failed publish for the Flask view to answer (a 503) instead of
#: trying the broker a second time: a black-holed broker would double the client's wait.
PUBLISH_FAILED = "album.webhook.publish_failed"
#: A publish: task name, its arguments, and the short repr Flower shows.
Publish = tuple[str, tuple[Any, ...], str]


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": 'Cloudinary realm="notifications"'})


def _check_signature(settings: Settings, algorithm: str, header: Callable[[str], str | None], raw: bytes) -> None:
    timestamp = header("X-Cld-Timestamp") or ""
    signature = header("X-Cld-Signature") or ""
    # ASCII digits, at most 12: "²" passes isdigit() but not int(), a huge one overflows float.
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12 or not signature:
        raise _unauthorized("Missing or malformed X-Cld-Timestamp / X-Cld-Signature.")
    age = time.time() - int(timestamp)
    if age > settings.webhook_max_age or age < -settings.webhook_max_skew:
        raise _unauthorized("X-Cld-Timestamp is outside the accepted window.")
    if not cloudinary_client.notification_signature_valid(raw, timestamp, signature, cloudinary_client.api_secret(), algorithm):
        raise _unauthorized("Invalid Cloudinary signature.")


def verify(settings: Settings, algorithm: str, header: Callable[[str], str | None], token: str, raw: bytes) -> Publish | None:
    """Check a notification (Cloudinary's signature, our token, the album tag) and say what to
    publish for it: None for a type we only acknowledge. Raises ``ApiError`` for a refusal."""
    _check_signature(settings, algorithm, header, raw)
    try:
        claims = tokens.decode_notification(token, settings.jwt_secret, settings.upload_form_ttl)
    except tokens.TokenError as exc:
        raise _unauthorized(str(exc)) from None
    payload = json_object(raw)

    album_id = claims["album_id"]
    kind = payload.get("notification_type")
    if kind == "upload":
        tags = payload.get("tags")
        if not isinstance(tags, list) or album_id not in tags:
            raise ApiError(403, "album_mismatch", "The upload is not tagged with the token's album.")
    name = _TASK_FOR.get(kind) if isinstance(kind, str) else None
    if name is None:
        logger.info("ignored notification type %r for album %s", kind, album_id)
        return None
    # Delete and eager notifications carry no tags: their tasks act only on images of this album.
    # A short argsrepr: Flower shows it, and Celery would otherwise repr the whole payload.
    user_id = claims.get("user_id")
    return name, (album_id, payload, user_id), f"({album_id!r}, <{kind} {payload.get('public_id')!r}>, {user_id!r})"


@bp.post("/cloudinary")
def notification() -> Response:
    raw = read_body()  # 413 past 1 MiB, chunked too: never a truncated body checked as forged
    work = verify(current_app.config["SETTINGS"], current_app.config["CLOUDINARY_SIGNATURE_ALGORITHM"],
                  request.headers.get, request.args.get("token", ""), raw)
    if work is not None:
        failed = request.environ.get(PUBLISH_FAILED)
        if failed is not None:
            raise failed
        publish_fast(*work)
    return current_app.response_class(_ACCEPTED, content_type=JSON_CONTENT_TYPE)


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class NotificationFastPath:
    """WSGI middleware: answers a valid notification itself, hands every other request to
    ``inner`` (Flask). See the module docstring for why."""

    def __init__(self, app: Flask, inner: WsgiApp) -> None:
        self.inner = inner
        self.settings: Settings = app.config["SETTINGS"]
        self.algorithm: str = app.config["CLOUDINARY_SIGNATURE_ALGORITHM"]
        self.check_response: Callable[[list[tuple[str, str]], bytes], None] | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST" or "HTTP_TRANSFER_ENCODING" in environ:
            return self.inner(environ, start_response)
        declared = environ.get("CONTENT_LENGTH") or ""
        length = int(declared) if declared.isascii() and declared.isdigit() else -1
        if not 0 <= length <= MAX_BODY:
            return self.inner(environ, start_response)  # no length, or too long: Flask's 400/411/413
        started = time.perf_counter()
        try:
            raw = environ["wsgi.input"].read(length)
        except Exception:  # noqa: BLE001 - the server's error for a client gone mid-body: Flask's answer
            return self.inner(environ, start_response)
        request_id = request_id_for(environ.get("HTTP_X_REQUEST_ID", ""))
        context = request_id_var.set(request_id)
        try:
            if len(raw) != length:
                raise ApiError(400, "bad_request", "short body")  # a client gone mid-body: Flask's answer
            token = next((value for key, value in parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
                          if key == "token"), "")
            work = verify(self.settings, self.algorithm, lambda name: environ.get("HTTP_" + name.upper().replace("-", "_")),
                          token, raw)
            if work is not None:
                publish_fast(*work)
        except Exception as exc:  # noqa: BLE001 - any refusal or failure: Flask answers it, from the same bytes
            if isinstance(exc, BrokerUnavailable):
                environ[PUBLISH_FAILED] = exc
            environ["wsgi.input"] = io.BytesIO(raw)
            return self.inner(environ, start_response)
        finally:
            request_id_var.reset(context)
        headers = [("Content-Type", JSON_CONTENT_TYPE), ("Content-Length", str(len(_ACCEPTED))),
                   *SECURITY_HEADERS.items(), ("X-Request-Id", request_id),
                   ("X-Runtime", runtime(started))]
        if self.check_response is not None:
            self.check_response(headers, _ACCEPTED)
        start_response("200 OK", headers)
        return [_ACCEPTED]


def install_fast_path(app: Flask) -> NotificationFastPath:
    fast = NotificationFastPath(app, app.wsgi_app)
    app.wsgi_app = fast  # type: ignore[method-assign]
    return fast
