"""Celery's own settings (read by ``worker/app.py`` with ``config_from_object``).

Values that vary per deployment come from ``common.config`` (the environment); the rest is
policy, explained where it is not obvious.
"""
from __future__ import annotations

from kombu import Queue

from common.config import get_settings

_settings = get_settings()

broker_url = _settings.broker_url
# Publishing must never hang a web worker: a dead or unreachable broker fails within about a
# second and the API answers 503 (the caller, or Cloudinary, retries).
broker_connection_timeout = 1.0
broker_connection_retry_on_startup = True
broker_transport_options = {
    # A message reserved by a worker that dies without acking comes back after this long;
    # it must exceed the longest task plus its longest countdown (rate_limit_max_wait).
    "visibility_timeout": _settings.broker_visibility_timeout,
    # Kombu looks for such abandoned messages every interval x throttle seconds (100 s by
    # default); one cheap sorted-set scan every few seconds brings them back promptly.
    "unacked_restore_interval": max(1, min(10, _settings.broker_visibility_timeout // 4)),
    "unacked_restore_throttle": 1,
    "socket_timeout": 1.0,
    "socket_connect_timeout": 1.0,
    "max_connections": 64,
}
task_publish_retry = True
task_publish_retry_policy = {"max_retries": 2, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.2}

task_serializer = "json"
accept_content = ["json"]
result_serializer = "json"
# Nobody reads results: don't store them.
task_ignore_result = True
result_backend = None

# A task is acknowledged after it ran, and a pool child killed mid-task puts its message back:
# every task is idempotent, so running twice is safe and dropping one is not.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
task_time_limit = 300
task_soft_time_limit = 240

# Flower needs events, including the "sent" one published by the web side.
worker_send_task_events = True
task_send_sent_event = True

task_default_queue = "fast"
task_queues = (
    Queue("fast", routing_key="fast"),  # database-only work: ingest, recount, sweeps
    Queue("io", routing_key="io"),  # Cloudinary calls: many at once per process (threads pool)
)
task_routes = {
    "album.ingest": {"queue": "fast"},
    "album.recount": {"queue": "fast"},
    "album.sweep_stuck": {"queue": "fast"},
    "album.reconcile_active": {"queue": "fast"},
    "album.fetch_metadata": {"queue": "io"},
    "album.generate_thumbnails": {"queue": "io"},
    "album.reconcile": {"queue": "io"},
    "album.destroy_image": {"queue": "io"},
}

beat_schedule = {
    "sweep-stuck-images": {"task": "album.sweep_stuck", "schedule": 60.0},
    # Lost webhooks of clients that never said upload_done again: each active album's tag is
    # listed twice an hour (one Admin API call per 500 photos).
    "reconcile-active-albums": {"task": "album.reconcile_active", "schedule": 1800.0},
}

worker_hijack_root_logger = False
imports = ("tasks.pipeline",)
