"""Worker process hooks: no pooled DB connection crosses a fork, and the request id of the
web request that caused a task follows it into the logs (``common.celery_app`` puts it in
the headers of every task sent, tasks' follow-ups included)."""
from __future__ import annotations

import logging
from typing import Any

from celery.signals import setup_logging, task_postrun, task_prerun, worker_init, worker_process_init

from common import cloudinary_client, db
from common.logs import request_id_var
from common.logs import setup_logging as setup_json_logging


@worker_process_init.connect
def _dispose_engine_after_fork(**_: Any) -> None:
    db.dispose(close=False)


@worker_init.connect
def _size_cloudinary_pool(sender: Any = None, **_: Any) -> None:
    # The io worker's threads all call Cloudinary: one keep-alive connection each, none discarded.
    concurrency = getattr(sender, "concurrency", None)
    if isinstance(concurrency, int) and concurrency > 0:
        cloudinary_client.size_http_pool(concurrency)


@setup_logging.connect
def _logging(loglevel: Any = None, **_: Any) -> None:
    # celery's --loglevel: a name ("INFO") or a number.
    level = logging.getLevelName(loglevel.upper()) if isinstance(loglevel, str) else loglevel
    setup_json_logging(level if isinstance(level, int) else logging.INFO)


@task_prerun.connect
def _bind_request_id(task: Any = None, **_: Any) -> None:
    rid = getattr(task.request, "request_id", None) if task is not None else None
    request_id_var.set(rid)


@task_postrun.connect
def _unbind_request_id(**_: Any) -> None:
    request_id_var.set(None)
