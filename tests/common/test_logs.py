"""The JSON log: housekeeping tasks' routine lines are left out, everything else stays."""
from __future__ import annotations

import io
import json
import logging

import celeryconfig
from common.logs import HOUSEKEEPING_TASKS, JsonFormatter, QuietHousekeeping


def test_every_task_beat_sends_is_housekeeping() -> None:
    assert {entry["task"] for entry in celeryconfig.beat_schedule.values()} == set(HOUSEKEEPING_TASKS)


def test_routine_lines_of_housekeeping_are_left_out_and_their_errors_kept() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(QuietHousekeeping())
    lines = [
        ("celery.beat", logging.INFO, "Scheduler: Sending due task heal (album.heal)"),
        ("celery.worker.strategy", logging.INFO, "Task album.fold_views[1f] received"),
        ("celery.app.trace", logging.INFO, "Task album.heal[2e] succeeded in 0.02s: None"),
        ("celery.worker.strategy", logging.INFO, "Task album.ingest[3d] received"),
        ("celery.app.trace", logging.INFO, "Task album.ingest[3d] succeeded in 0.05s: None"),
        ("celery.app.trace", logging.ERROR, "Task album.heal[4c] raised unexpected: OperationalError()"),
        ("tasks.pipeline", logging.INFO, "healed album.heal-like message from our own code"),
    ]
    for name, level, message in lines:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        try:
            logger.handle(logger.makeRecord(name, level, __file__, 1, message, (), None))
        finally:
            logger.removeHandler(handler)
    kept = [json.loads(line)["msg"] for line in out.getvalue().splitlines()]
    assert kept == [message for _, _, message in lines[3:]]
