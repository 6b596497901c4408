"""`make run`'s script, then a second terminal that knows nothing but the checkout's .env.

scripts/run.sh runs for real (database upgrade, demo album, .env, banner) up to the point where
it hands over to honcho, which is replaced by a stub here: the web tier is a gunicorn of this
module on WEB_PORT. Then, with only PATH and HOME in the environment and the .env's folder as
working directory — a second terminal — the banner's curl, `tokens issue`, `albums reconcile`
and `albums reprocess --wait` reach that same database, broker and secret."""
from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import jwt
import pytest
import redis

from tests.conftest import ROOT, SEED_ALBUM, TEST_JWT_SECRET
from tests.web.conftest import CLOUDINARY_URL

VENV_BIN = str(Path(sys.executable).parent)


@pytest.fixture
def started(gunicorn_server, redis_url, tmp_path) -> dict[str, Any]:
    """Run scripts/run.sh with the suite's database and Redis; return its banner and .env."""
    stub = tmp_path / "bin" / "honcho"
    stub.parent.mkdir()
    stub.write_text('#!/bin/sh\necho "$@" > "$(dirname "$0")/honcho.args"\n')
    stub.chmod(0o755)
    terminal = tmp_path / "terminal"
    terminal.mkdir()
    env = {
        "PATH": f"{stub.parent}:{VENV_BIN}:/usr/bin:/bin", "HOME": os.environ.get("HOME", str(tmp_path)),
        "ENV_FILE": str(terminal / ".env"), "WEB_PORT": str(gunicorn_server.port),
        "DATABASE_URL": os.environ["DATABASE_URL"], "CELERY_BROKER_URL": redis_url,
        "CLOUDINARY_URL": CLOUDINARY_URL, "JWT_SECRET": TEST_JWT_SECRET, "APP_ENV": "test",
    }
    run = subprocess.run(["bash", "scripts/run.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    return {"banner": run.stdout, "terminal": terminal, "honcho": (stub.parent / "honcho.args").read_text().split()}


def second_terminal(started: dict[str, Any], command: str) -> subprocess.CompletedProcess[str]:
    """A shell with the venv's binaries on PATH and nothing else set, in the .env's folder."""
    env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(["bash", "-c", command], cwd=started["terminal"], env=env, capture_output=True, text=True,
                          timeout=60)


def test_run_writes_an_env_file_with_what_it_chose_and_its_banners_curl_works(started, redis_url):
    env_file = started["terminal"] / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600  # it holds the Cloudinary secret
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if line and not line.startswith("#"))
    assert values["CELERY_BROKER_URL"] == f"'{redis_url}'"
    assert values["DATABASE_URL"] == f"'{os.environ['DATABASE_URL']}'"
    assert values["CLOUDINARY_URL"] == f"'{CLOUDINARY_URL}'"
    assert jwt.decode(values["TOKEN"].strip("'"), TEST_JWT_SECRET, algorithms=["HS256"])["abilities"][SEED_ALBUM]
    # honcho gets the Procfile's processes, and not the .env (the demo token stays out of them).
    assert started["honcho"][:3] == ["start", "--env", "/dev/null"] and "web" in started["honcho"]

    # The banner's curl, pasted as it is into another terminal.
    line = next(line for line in started["banner"].splitlines() if line.strip().startswith("Try:"))
    command = line.split("Try:", 1)[1].strip()
    assert shlex.split(command)[0] == "curl"
    result = second_terminal(started, command + " --silent --fail-with-body")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["upload_form"]["params"]["tags"] == SEED_ALBUM


def test_a_second_terminal_reaches_the_same_stack(started, redis_url):
    issued = second_terminal(started, f"flask --app web tokens issue --user ops --album {SEED_ALBUM} --ability read")
    assert issued.returncode == 0, issued.stderr
    assert jwt.decode(issued.stdout.strip(), TEST_JWT_SECRET, algorithms=["HS256"])["user_id"] == "ops"

    broker = redis.Redis.from_url(redis_url)
    queued_before = broker.llen("io")
    reconcile = second_terminal(started, f"flask --app web albums reconcile {SEED_ALBUM}")
    assert reconcile.returncode == 0, reconcile.stderr
    assert broker.llen("io") == queued_before + 1  # into the stack's broker, not a default one
    broker.delete("io")  # no worker here to take it

    waited = second_terminal(started, f"flask --app web albums reprocess {SEED_ALBUM} --wait --timeout 10")
    assert waited.returncode == 0, waited.stderr
    assert "0 ready, 0 failed" in waited.stdout

    # The README's way to the demo token for curl.
    readme = second_terminal(started, 'set -a; . ./.env; set +a; curl --silent --fail-with-body -X POST '
                                      '-H "Authorization: Bearer $TOKEN" "$PUBLIC_URL/api/v1/albums/' + SEED_ALBUM + '/upload_done"')
    assert readme.returncode == 0, readme.stdout + readme.stderr
    assert json.loads(readme.stdout)["id"] == SEED_ALBUM


def test_the_env_file_can_hold_every_setting_the_app_reads():
    """run.sh names the variables it writes: none that common.config reads may be missing."""
    from common.config import load_settings

    class Recording(dict):
        def get(self, key, default=None):
            read.add(key)
            return default

    read: set[str] = set()
    load_settings(Recording())
    written = set((ROOT / "scripts" / "run.sh").read_text().split('SETTINGS="', 1)[1].split('"', 1)[0].split())
    assert read and read <= written, sorted(read - written)

