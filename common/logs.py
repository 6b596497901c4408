"""Structured (JSON) log lines that carry the request id from a web request into every task
it caused, and from a task into the tasks it enqueues."""
from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from typing import Any

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": request_id_var.get(),
        }
        extra = getattr(record, "fields", None)
        if extra:
            line.update(extra)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


#: Celery's routine INFO lines about a task: beat sending it, a worker receiving it, its success.
_ROUTINE_LOGGERS = frozenset({"celery.beat", "celery.worker.strategy", "celery.app.trace"})
#: The tasks beat sends every few seconds (celeryconfig.beat_schedule): heal, fold_views.
HOUSEKEEPING_TASKS = ("album.heal", "album.fold_views")


class QuietHousekeeping(logging.Filter):
    """Drops the routine INFO lines of the housekeeping tasks: six lines every 5-10 s would bury
    the lines about photos in ``make run``'s output and in every worker's log. Their warnings and
    errors (a failed heal) stay, all of them at ``--loglevel DEBUG``; Flower shows every run."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or record.name not in _ROUTINE_LOGGERS:
            return True
        message = record.getMessage()
        return not any(name in message for name in HOUSEKEEPING_TASKS)


def setup_logging(level: int = logging.INFO) -> None:
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    if level > logging.DEBUG:  # ``--loglevel DEBUG`` shows them
        handler.addFilter(QuietHousekeeping())
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def log(logger: logging.Logger, level: int, msg: str, **fields: Any) -> None:
    """``log(logger, logging.INFO, "ingested", image_id=3)`` -> one JSON line with the fields."""
    logger.log(level, msg, extra={"fields": fields})
