"""The baseline task of bench/pipeline_capacity.py: it only records that it ran (one Redis
INCR), so its throughput is what the same workers give when the task itself costs nothing.
Loaded into the bench's workers with ``celery worker --include bench.noop_task``."""
from __future__ import annotations

from common.coordination import client as redis_client
from worker.app import app

#: The Redis counter the bench reads to know how many no-op tasks ran.
DONE_KEY = "bench:noop:done"


@app.task(name="bench.noop", ignore_result=True)
def noop() -> None:
    redis_client().incr(DONE_KEY)
