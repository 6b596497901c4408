"""The Celery application as workers run it: ``celery --app worker.app:app worker``. The app
itself is ``common.celery_app.app``; this adds the worker's signal handlers (engine disposed
after fork, request-id propagation, logging). It builds no Flask app: tasks use ``common``."""
from __future__ import annotations

from common.celery_app import app
from worker import signals  # noqa: F401  (connects the handlers)

__all__ = ["app"]
