"""Workers and beat outlive their broker: Redis is SIGKILLed under a live worker that holds a
countdown task, and comes back empty on the same port. (Celery 5.7.0's worker exits here with
"Unrecoverable error: AttributeError(... 'hostname')"; pyproject.toml pins below it.)"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery import Celery

from tests.conftest import ROOT
from tests.e2e.stack import wait_for
from tests.redis_server import RedisServer


def _lines(path: Path, needle: str) -> int:
    return sum(needle in line for line in path.read_text(errors="replace").splitlines()) if path.exists() else 0


@pytest.fixture
def broker(tmp_path):
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_a_worker_and_beat_go_on_after_redis_restarts_empty(seed_album, broker, tmp_path, pool):
    env = {**os.environ, "CELERY_BROKER_URL": broker.url, "REDIS_URL": broker.url, "PYTHONPATH": str(ROOT),
           "HEAL_INTERVAL": "1", "PYTHONUNBUFFERED": "1"}
    worker_log, beat_log = tmp_path / "worker.log", tmp_path / "beat.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "--app", "worker.app:app", "worker", "--queues", "fast,io", "--pool", pool,
         # DEBUG: heal's routine lines are left out at INFO (common/logs.py), and they are counted here.
         "--concurrency", "2", "--loglevel", "DEBUG", "--without-mingle", "--without-gossip"],
        cwd=ROOT, env=env, stdout=open(worker_log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "--app", "worker.app:app", "beat", "--schedule", str(tmp_path / "schedule"),
         "--loglevel", "INFO"],
        cwd=ROOT, env=env, stdout=open(beat_log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    client = Celery("probe")

    def send(album_id: str, **options) -> None:
        # An explicit connection: Celery would take CELERY_BROKER_URL (the suite's Redis) over `broker=`.
        with client.connection_for_write(broker.url) as connection:
            client.send_task("album.recount", args=(album_id,), queue="fast", connection=connection, **options)

    try:
        wait_for(lambda: " ready." in worker_log.read_text(errors="replace"), 30, what="the worker")
        # A task the worker holds, unacknowledged, for half a minute.
        send("held", countdown=30)
        wait_for(lambda: _lines(worker_log, "album.recount[") >= 1, 15, what="the countdown task to be received")
        heals_before = wait_for(lambda: _lines(worker_log, "album.heal["), 15, what="heal before the restart")

        broker.restart_empty(down_for=2)
        restarted = time.monotonic()

        # It reconnects and goes on consuming: a new task is run, and beat's heal comes again.
        send("00100000123BB25")
        wait_for(lambda: _lines(worker_log, '"album_id": "00100000123BB25"'), 30, interval=0.2,
                 what="a task sent after the restart to run")
        wait_for(lambda: _lines(worker_log, "album.heal[") > heals_before + 4, 30, what="heal after the restart")
        print(f"\nworker ({pool}) consuming again {time.monotonic() - restarted:.1f} s after Redis came back")
        assert worker.poll() is None, worker_log.read_text()[-3000:]
        assert beat.poll() is None, beat_log.read_text()[-3000:]
        assert _lines(worker_log, "Unrecoverable error") == 0
    finally:
        for proc in (beat, worker):
            if proc.poll() is None:
                os.killpg(proc.pid, 15)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, 9)
