"""The real chain as processes: the Cloudinary emulator, the web app served by gunicorn over
HTTP, and Celery workers on the real Redis, all with the caller's environment (same database,
same broker). Used by the end-to-end tests (tests/e2e/conftest.py) and the benchmarks."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import cloudinary
import cloudinary.uploader
import requests

from cloudinary_emulator.testing import EmulatorProcess
from common import db, tokens
from common.models import Album, Organization

ROOT = Path(__file__).resolve().parents[2]

#: Shortened so a test can watch a SIGKILLed worker's reserved message come back.
VISIBILITY_TIMEOUT = 20
#: Shortened so that tests see overdue work sent again within seconds (production: 30 s and 10 s).
STAGE_LEASE = 4
HEAL_INTERVAL = 1
#: The beat folds pending album views this often: production's 5 s (the views tests' bounds follow it).
VIEW_FOLD_INTERVAL = 5
#: The emulator's API secret; the web app and workers get it in their CLOUDINARY_URL.
EMULATOR_SECRET = "e2e-emulator-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.2, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Stack:
    """Handles on the running processes, plus helpers to drive them as a client would."""

    def __init__(self, tmp: Path, jwt_secret: str, extra_env: dict[str, str] | None = None,
                 default_worker: bool = True, **emulator_faults: float) -> None:
        self.tmp = tmp
        self.jwt_secret = jwt_secret
        self.extra_env = extra_env or {}
        self.default_worker = default_worker
        self.emulator = EmulatorProcess(
            tmp / "cloudinary", api_secret=EMULATOR_SECRET,
            extra_args=["--notification-retry-delay", "0.2"], **emulator_faults,
        )
        self.web_port = free_port()
        self.web_url = f"http://127.0.0.1:{self.web_port}"
        self.env: dict[str, str] = {}
        self.web: subprocess.Popen[bytes] | None = None
        self.beat: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.logs = tmp / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        #: Every session and notification token this stack handed out or received: none may be logged.
        self.credentials: set[str] = set()

    # -- processes ---------------------------------------------------------------------

    def start(self) -> None:
        self.emulator.start()
        self.env = {
            **os.environ,
            "CLOUDINARY_URL": self.emulator.cloudinary_url,
            "PUBLIC_URL": self.web_url,
            "BROKER_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
            "STAGE_LEASE": str(STAGE_LEASE),
            "HEAL_INTERVAL": str(HEAL_INTERVAL),
            "VIEW_FOLD_INTERVAL": str(VIEW_FOLD_INTERVAL),
            # The budget tests give the emulator a budget of a few calls: keep only one back.
            "ADMIN_BUDGET_RESERVE": "1",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        cloudinary.reset_config()
        cloudinary.config(**self.emulator.cloudinary_config())
        self.purge_queues()
        # Production's settings (gunicorn.conf.py: limits, access log with credentials redacted).
        self.web = self._spawn(
            "web", [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{self.web_port}",
                    "--workers", "2", "--threads", "4", "web:create_app()"],
        )
        wait_for(self._web_up, 30, what="the web app")
        if self.default_worker:
            self.start_worker("default")
        self.start_beat()

    def start_beat(self) -> None:
        """Celery beat: it sends the heal task every HEAL_INTERVAL seconds, the view fold every
        VIEW_FOLD_INTERVAL seconds."""
        self.beat = self._spawn("beat", [sys.executable, "-m", "celery", "--app", "worker.app:app", "beat",
                                         "--schedule", str(self.tmp / "celerybeat-schedule"), "--loglevel", "INFO"])

    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "ab")
        # Own process group: a test can SIGKILL a worker with all its pool children.
        return subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def _web_up(self) -> bool:
        try:
            return requests.get(self.web_url + "/health", timeout=1).ok
        except requests.RequestException:
            return False

    def start_worker(self, name: str, pool: str = "threads", concurrency: int = 8, queues: str = "fast,io",
                     extra_args: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
        """A Celery worker process; its log is ``logs/worker-<name>.log``. ``extra_args`` go to
        ``celery worker`` (the benches add ``--include`` for their baseline task)."""
        hostname = f"{name}-{uuid.uuid4().hex[:6]}@%h"
        proc = self._spawn(
            f"worker-{name}",
            [sys.executable, "-m", "celery", "--app", "worker.app:app", "worker", "--queues", queues, "--pool", pool,
             "--concurrency", str(concurrency), "--hostname", hostname, "--loglevel", "INFO", "--without-mingle",
             "--without-gossip", *extra_args],
        )
        self.workers.append(proc)
        wait_for(lambda: self._worker_ready(name), 30, what=f"worker {name}")
        return proc

    def worker_log_lines(self, needle: str) -> int:
        """How many log lines of all workers contain ``needle`` (the JSON logs carry ids)."""
        return sum(
            sum(1 for line in path.read_text(errors="replace").splitlines() if needle in line)
            for path in self.logs.glob("worker-*.log")
        )

    def _worker_ready(self, name: str) -> bool:
        log = (self.logs / f"worker-{name}.log").read_text(errors="replace")
        return " ready." in log

    def stop_worker(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if proc in self.workers:
            self.workers.remove(proc)

    def purge_queues(self) -> None:
        """Drop messages earlier unit tests left in the test broker."""
        from worker.app import app

        with app.connection_for_write() as conn:
            for queue in ("fast", "io"):
                conn.default_channel.queue_purge(queue)

    def stop(self) -> None:
        if self.beat is not None and self.beat.poll() is None:
            os.killpg(self.beat.pid, signal.SIGTERM)
            self.beat.wait(timeout=30)
        for proc in list(self.workers):
            self.stop_worker(proc)
        if self.web is not None and self.web.poll() is None:
            os.killpg(self.web.pid, signal.SIGTERM)
            self.web.wait(timeout=30)
        self.emulator.stop()

    # -- client side -------------------------------------------------------------------

    def new_album(self) -> str:
        album_id = "E2E" + uuid.uuid4().hex[:12].upper()
        with db.session_scope() as session:
            org = Organization(name="e2e")
            session.add(org)
            session.flush()
            session.add(Album(id=album_id, organization_id=org.id))
        return album_id

    def token(self, album_id: str, abilities: tuple[str, ...] = ("image_upload", "read", "manage")) -> str:
        token = tokens.issue_session("e2e-user", {album_id: abilities}, self.jwt_secret, 14400)
        self.credentials.add(token)
        return token

    def api(self, method: str, path: str, album_id: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token(album_id)}", **kwargs.pop("headers", {})}
        response = requests.request(method, self.web_url + path, headers=headers, timeout=10, **kwargs)
        if response.headers.get("X-token"):
            self.credentials.add(response.headers["X-token"])
        return response

    def upload_done(self, album_id: str) -> dict[str, Any]:
        response = self.api("POST", f"/api/v1/albums/{album_id}/upload_done", album_id)
        assert response.status_code == 200, response.text
        body = response.json()
        self.credentials.add(body["upload_form"]["params"]["notification_url"].split("token=", 1)[1])
        return body

    def logged_credentials(self) -> list[str]:
        """The credentials of ``self.credentials`` found in any log of the stack (web, workers)."""
        text = "\n".join(path.read_text(errors="replace") for path in self.logs.glob("*.log"))
        return sorted(token[:20] + "…" for token in self.credentials if token in text or token.rsplit(".", 1)[-1] in text)

    def upload(self, form: dict[str, Any], photo: Path) -> dict[str, Any]:
        """Upload one photo with the official SDK, sending exactly the form's signed params."""
        assert cloudinary.utils.cloudinary_api_url("upload", resource_type="auto") == form["url"]
        return cloudinary.uploader.call_api("upload", dict(form["params"]), unsigned=True, file=str(photo), resource_type="auto")

    def images(self, album_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        cursor = None
        while True:
            params = {"limit": 200, **({"cursor": cursor} if cursor else {})}
            body = self.api("GET", f"/api/v1/albums/{album_id}/images", album_id, params=params).json()
            found += body["images"]
            cursor = body["next_cursor"]
            if not cursor:
                return found

    def album(self, album_id: str) -> dict[str, Any]:
        return self.api("GET", f"/api/v1/albums/{album_id}", album_id).json()

    def wait_all_ready(self, album_id: str, count: int, timeout: float = 90) -> list[dict[str, Any]]:
        def done() -> list[dict[str, Any]] | None:
            images = self.images(album_id)
            if len(images) >= count and all(i["status"] in ("ready", "failed") for i in images):
                return images
            return None

        return wait_for(done, timeout, interval=0.5, what=f"{count} images ready in {album_id}")
