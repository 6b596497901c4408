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
    # it must exceed the longest task plus its longest countdown (Settings.queue_max_countdown).
    "visibility_timeout": _settings.broker_visibility_timeout,
    # Kombu looks for such abandoned messages every interval x throttle seconds (100 s by
    # default); one cheap sorted-set scan every few seconds brings them back promptly.
    "unacked_restore_interval": max(1, min(10, _settings.broker_visibility_timeout // 4)),
    "unacked_restore_throttle": 1,
    "socket_timeout": 1.0,
    "socket_connect_timeout": 1.0,
    "max_connections": 64,
}
if _settings.redis_master_name:
    # sentinel:// broker URLs (Redis Sentinel): kombu asks the Sentinels for this master on
    # every new connection, so web and workers follow a failover when they reconnect.
    broker_transport_options["master_name"] = _settings.redis_master_name
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
# Below the visibility timeout, or a slow task would be delivered to a second worker meanwhile
# (prefork only: a thread cannot be stopped; Cloudinary calls time out after 30 s instead).
task_time_limit = max(15, _settings.broker_visibility_timeout - 10)
task_soft_time_limit = max(10, _settings.broker_visibility_timeout - 20)

# Flower needs events, including the "sent" one published by the web side.
worker_send_task_events = True
task_send_sent_event = True

task_default_queue = "fast"
# Direct queues: Celery publishes to them through the nameless exchange, straight onto the list
# the queue's name names, so a Redis restarted empty (which forgets kombu's exchange bindings)
# still routes every message.
task_queues = (
    Queue("fast", routing_key="fast"),  # database-only work: ingest, recount, heal
    Queue("io", routing_key="io"),  # Cloudinary calls: many at once per process (threads pool)
)
task_routes = {
    "album.ingest": {"queue": "fast"},
    "album.recount": {"queue": "fast"},
    "album.index_duplicates": {"queue": "fast"},
    "album.heal": {"queue": "fast"},
    "album.remove_deleted": {"queue": "fast"},
    "album.fold_views": {"queue": "fast"},
    "album.fetch_metadata": {"queue": "io"},
    "album.generate_thumbnails": {"queue": "io"},
    "album.record_eager": {"queue": "io"},
    "album.reconcile": {"queue": "io"},
    "album.destroy_image": {"queue": "io"},
}

beat_schedule = {
    # Re-sends overdue stages, recounts albums whose recount was lost, reconciles albums owed
    # one, destroys what a failed destroy left, and notices a broker that lost its messages.
    # A heal that waited in the queue longer than its interval is dropped: the next one comes.
    "heal": {"task": "album.heal", "schedule": _settings.heal_interval,
             "options": {"expires": max(5.0, _settings.heal_interval)}},
    # Pending album views into the database. A run that waited longer than the interval is
    # dropped (the next one folds the same views): a stopped worker does not pile them up.
    "fold-album-views": {"task": "album.fold_views", "schedule": _settings.view_fold_interval,
                         "options": {"expires": max(1.0, _settings.view_fold_interval)}},
}

worker_hijack_root_logger = False
imports = ("tasks.pipeline", "tasks.views")
