"""gunicorn's settings for the web tier: ``gunicorn --config gunicorn.conf.py 'web:create_app()'``
(the Procfile's ``web``). Command-line flags override what is set here (tests pass ``--bind``)."""
from __future__ import annotations

import os
from typing import Any

bind = [f"127.0.0.1:{os.environ.get('WEB_PORT', '5000')}"]
# The API waits on the database and Redis, not the CPU: a few processes with threads each.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "4"))

# Every answer takes milliseconds (slow work is queued): a worker silent for 30 s is stuck.
timeout = 30
graceful_timeout = 20
keepalive = 5

# Limits of what gunicorn reads before the app sees a request. Beyond them gunicorn answers
# itself — 414 (request line), 431 (a header too long, too many headers), 400 (malformed) — in
# the app's JSON error shape with its security headers (web/server.py). Bodies are the app's:
# 1 MiB, 413 (web/body.py).
limit_request_line = 4094  # method + path + query + version: the longest URL is ~4 KiB
limit_request_fields = 100
limit_request_field_size = 8190

# Both logs to stderr/stdout, every credential redacted (web/server.py): a request line carries
# the webhook's ?token= and the upload page's ?token=; Authorization is never a logged field.
accesslog = "-"
errorlog = "-"
access_log_format = '%(h)s %(t)s "%(r)s" %(s)s %(b)s %(M)sms "%(f)s" "%(a)s" %({x-request-id}o)s'
logger_class = "web.server.RedactingLogger"

# gunicorn 25.1+ opens a control socket at one per-user path (~/.gunicorn/gunicorn.ctl): two
# servers on a machine (tests, a second checkout) would take it from each other. Nothing here uses it.
control_socket_disable = True


def post_worker_init(worker: Any) -> None:
    from web.server import answer_errors_in_json

    answer_errors_in_json()
