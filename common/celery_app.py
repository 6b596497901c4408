"""The Celery application object, configured from ``celeryconfig.py``.

It lives in ``common/`` so that what publishes tasks (``common.enqueue``, the web side) needs
neither the worker's hooks nor the task modules: tasks are sent by name. ``worker/app.py`` is
what ``celery --app`` names; it adds the worker-side signal handlers to this app.
"""
from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import before_task_publish

from common.logs import request_id_var

# Events through a dispatcher whose task-event buffer is thread-safe (common/celery_events.py).
app = Celery("album", events="common.celery_events:LockedEvents")
app.config_from_object("celeryconfig")


@before_task_publish.connect
def _propagate_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """The request id of the web request (or task) that sends a task travels in its headers."""
    rid = request_id_var.get()
    if headers is not None and rid and "request_id" not in headers:
        headers["request_id"] = rid
