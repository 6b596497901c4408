"""Flower, as operators run it (the Procfile's ``flower``), watching the real stack: it lists
the worker and shows an upload's ``album.ingest`` task succeed, from the task events the
worker and the web side send (``worker_send_task_events``, ``task_send_sent_event``)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any, Iterator

import pytest
import requests

from tests.conftest import FIXTURES
from tests.e2e.conftest import free_port, wait_for

FLOWER_AUTH = ("flower-user", "flower-pass")


class Flower:
    def __init__(self, url: str, process: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.process = process

    def get(self, path: str, **params: Any) -> Any:
        response = requests.get(self.url + path, params=params, auth=FLOWER_AUTH, timeout=10)
        response.raise_for_status()
        return response.json()

    def up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"flower exited with {self.process.returncode}")
        try:
            # /healthcheck skips basic auth; that is why Flower binds a private address.
            return requests.get(self.url + "/healthcheck", timeout=1).ok
        except requests.RequestException:
            return False


@pytest.fixture
def flower(stack: Any) -> Iterator[Flower]:
    """Flower started before anything is uploaded: it only sees events from its own start."""
    port = free_port()
    log = open(stack.logs / "flower.log", "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "--app", "worker.app:app", "flower", f"--port={port}",
         "--address=127.0.0.1", f"--basic-auth={FLOWER_AUTH[0]}:{FLOWER_AUTH[1]}"],
        env=stack.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    running = Flower(f"http://127.0.0.1:{port}", process)
    try:
        wait_for(running.up, 30, what="flower")
        yield running
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        log.close()


def test_flower_needs_its_password(flower: Flower) -> None:
    assert requests.get(flower.url + "/api/workers", timeout=10).status_code == 401
    wrong = requests.get(flower.url + "/api/workers", auth=("flower-user", "nope"), timeout=10)
    assert wrong.status_code == 401


def test_flower_lists_the_worker_and_an_upload_task(stack: Any, flower: Flower, album: str) -> None:
    # The worker answers Flower's inspect broadcast (remote control works without gossip).
    workers = wait_for(lambda: flower.get("/api/workers", refresh=1), 30, interval=0.5, what="workers in flower")
    assert any(name.startswith("default-") for name in workers), workers

    # Flower sees only events sent after it subscribed: wait until it shows one (beat sends heal
    # every second in the stack), so that the upload's events cannot come before it listens.
    wait_for(lambda: flower.get("/api/tasks", taskname="album.heal"), 60, interval=0.5, what="task events in flower")
    form = stack.upload_done(album)["upload_form"]
    uploaded = stack.upload(form, FIXTURES / "astronaut.jpg")

    def ingest_succeeded() -> dict[str, Any] | None:
        tasks = flower.get("/api/tasks", taskname="album.ingest", state="SUCCESS")
        return next((t for t in tasks.values() if album in (t.get("args") or "")), None)

    task = wait_for(ingest_succeeded, 60, interval=0.5, what="a successful album.ingest in flower")
    assert task["name"] == "album.ingest"
    assert task["state"] == "SUCCESS"
    assert task["worker"] in workers
    assert uploaded["public_id"] in task["args"]
    # The webhook's publish also sent the task-sent event (task_send_sent_event): Flower saw it.
    assert task["sent"] and task["received"] and task["sent"] <= task["received"]
    # The pipeline the ingest started is visible too (the I/O-queue stages).
    stack.wait_all_ready(album, 1)
    names = {t["name"] for t in flower.get("/api/tasks").values()}
    assert {"album.ingest", "album.generate_thumbnails"} <= names
