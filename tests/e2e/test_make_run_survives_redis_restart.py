"""`make run`'s stack (scripts/run.sh, then honcho running the Procfile: gunicorn, the fast and
io workers, beat, Flower) keeps running when its Redis is SIGKILLed and comes back empty: honcho
stops everything as soon as one process exits, so one worker dying on the restart would end the
whole stack. A photo uploaded after the restart is processed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cloudinary
import cloudinary.uploader
import requests

from cloudinary_emulator.testing import EmulatorProcess
from tests.conftest import FIXTURES, ROOT, SEED_ALBUM, TEST_JWT_SECRET
from tests.e2e.stack import free_port, wait_for
from tests.redis_server import RedisServer

VENV_BIN = str(Path(sys.executable).parent)


def test_make_run_keeps_running_across_a_redis_restart(seed_album, tmp_path) -> None:
    from common import tokens

    redis_server = RedisServer(tmp_path / "redis")
    redis_server.start()
    emulator = EmulatorProcess(tmp_path / "cloudinary", extra_args=["--notification-retry-delay", "0.2"])
    emulator.start()
    web_port = free_port()
    env = {
        "PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": os.environ.get("HOME", str(tmp_path)),
        "ENV_FILE": str(tmp_path / ".env"), "WEB_PORT": str(web_port), "FLOWER_PORT": str(free_port()),
        "PUBLIC_URL": f"http://127.0.0.1:{web_port}", "DATABASE_URL": os.environ["DATABASE_URL"],
        "CELERY_BROKER_URL": redis_server.url, "CLOUDINARY_URL": emulator.cloudinary_url,
        "JWT_SECRET": TEST_JWT_SECRET, "APP_ENV": "test", "IO_CONCURRENCY": "4", "HEAL_INTERVAL": "2",
        "PYTHONUNBUFFERED": "1", "BEAT_SCHEDULE": str(tmp_path / "celerybeat-schedule"),
    }
    log_path = tmp_path / "make-run.log"
    stack = subprocess.Popen(["bash", "scripts/run.sh"], cwd=ROOT, env=env, stdout=open(log_path, "wb"),
                             stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{web_port}"
    token = tokens.issue_session("ops", {SEED_ALBUM: ("image_upload", "read")}, TEST_JWT_SECRET, 3600)
    headers = {"Authorization": f"Bearer {token}"}
    saved_config = dict(cloudinary.config().__dict__)  # the e2e package's stack shares the SDK's config
    cloudinary.reset_config()
    cloudinary.config(**emulator.cloudinary_config())

    def log() -> str:
        return log_path.read_text(errors="replace")

    def upload_and_wait(photo: Path) -> None:
        form = requests.post(f"{base}/api/v1/albums/{SEED_ALBUM}/upload_done", headers=headers, timeout=10).json()["upload_form"]
        uploaded = cloudinary.uploader.call_api("upload", dict(form["params"]), unsigned=True, file=str(photo),
                                                resource_type="auto")

        def ready() -> bool:
            images = requests.get(f"{base}/api/v1/albums/{SEED_ALBUM}/images", headers=headers, timeout=10).json()["images"]
            return any(i["public_id"] == uploaded["public_id"] and i["status"] == "ready" for i in images)

        wait_for(ready, 60, interval=0.5, what=f"{photo.name} ready")

    try:
        wait_for(lambda: log().count(" ready.") >= 2 or stack.poll() is not None, 90, what="both workers ready")
        assert stack.poll() is None, log()[-3000:]
        upload_and_wait(FIXTURES / "coffee.jpg")

        redis_server.restart_empty(down_for=2)
        time.sleep(15)  # the workers reconnect (or, on celery 5.7.0, exit and take honcho down with them)
        assert stack.poll() is None, log()[-3000:]
        assert "Unrecoverable error" not in log()
        upload_and_wait(FIXTURES / "chelsea.jpg")
        assert stack.poll() is None
    finally:
        if stack.poll() is None:
            os.killpg(stack.pid, signal.SIGTERM)
            try:
                stack.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(stack.pid, signal.SIGKILL)
        emulator.stop()
        redis_server.stop()
        cloudinary.reset_config()
        cloudinary.config(**saved_config)
