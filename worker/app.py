"""The Celery application. It builds no Flask app: tasks use ``common`` directly."""
from __future__ import annotations

from celery import Celery

app = Celery("album")
app.config_from_object("celeryconfig")

# Signal handlers (engine dispose after fork, request-id propagation, logging).
from worker import signals  # noqa: E402,F401
