"""The beat task that folds pending album views into ``albums.views_count`` (the logic, and why
it counts each view once, is in ``common/views.py``)."""
from __future__ import annotations

import logging

from celery import Task

from common import db, views
from common.coordination import client
from common.logs import log
from worker.app import app

logger = logging.getLogger(__name__)


# No retry: the beat runs it again within seconds, and a failed fold waits in Redis for that run.
# The time limit stays below the fold lease, so no live run is taken over.
@app.task(name="album.fold_views", bind=True, soft_time_limit=views.FOLD_LEASE / 3, time_limit=views.FOLD_LEASE / 2)
def fold_views(self: Task) -> None:
    """Beat, every ``VIEW_FOLD_INTERVAL`` seconds: pending views into the database, once."""
    report = views.fold(client(), db.session_scope)
    if report.folds or report.already_applied:
        log(logger, logging.INFO, "views folded", views=report.views, albums=len(report.albums),
            folds=report.folds, already_applied=report.already_applied)
