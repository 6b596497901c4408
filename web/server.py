"""gunicorn's side of the web tier (wired in by ``gunicorn.conf.py``).

- ``RedactingLogger``: gunicorn's logger with every credential cut out of every line it writes,
  access log and error log alike (a request line carries the webhook's ``?token=``, the upload
  page's ``?token=``; a refused request line is echoed in a warning).
- ``answer_errors_in_json``: the requests gunicorn refuses itself, before the app sees them (a
  request line over ``limit_request_line``, a header over ``limit_request_field_size``, too many
  headers, a malformed request), answered as the app answers errors: JSON ``{"error": {"code",
  "message"}}`` with the security headers, instead of gunicorn's HTML page. gunicorn has no
  setting for that body; its one writer, ``gunicorn.util.write_error``, is replaced (same
  signature), which keeps gunicorn's own choice of status for each refusal. The app cannot do
  it instead: these requests never reach it, whatever the limits.
"""
from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from gunicorn import util as gunicorn_util
from gunicorn.glogging import Logger

from common.tokens import redact
from web.errors import HTTP_CODES
from web.headers import JSON_CONTENT_TYPE, SECURITY_HEADERS

#: The longest message echoed back (gunicorn's messages quote the offending request line).
_MESSAGE_MAX = 300


class _RedactCredentials(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # Format once, redact, and keep the result as a plain message (no args left to format).
        record.msg, record.args = redact(record.getMessage()), ()
        return True


_REDACT = _RedactCredentials()


class RedactingLogger(Logger):
    """gunicorn's ``Logger``; each line it writes passes through ``common.tokens.redact``."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            log.addFilter(_REDACT)  # the same filter object: a reload does not stack it


def json_error(status_int: int, reason: str, mesg: str) -> bytes:
    """A complete HTTP/1.1 error response in the app's error shape, ready for the socket."""
    message = redact(mesg or reason)[:_MESSAGE_MAX]
    body = json.dumps({"error": {"code": HTTP_CODES.get(status_int, "http_error"), "message": message}},
                      separators=(",", ":")).encode()
    head = [f"HTTP/1.1 {status_int} {reason}", "Connection: close", f"Content-Type: {JSON_CONTENT_TYPE}",
            f"Content-Length: {len(body)}", *(f"{name}: {value}" for name, value in SECURITY_HEADERS.items()),
            f"X-Request-Id: {uuid.uuid4()}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def _write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    gunicorn_util.write_nonblock(sock, json_error(status_int, reason, mesg))


def answer_errors_in_json() -> None:
    """Make gunicorn's own refusals JSON in this process (a ``post_worker_init`` hook)."""
    gunicorn_util.write_error = _write_json_error
