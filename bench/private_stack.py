"""The private stack a pipeline bench runs on: its own Redis and SQLite database, then the
emulator, gunicorn and the Procfile's workers as ``tests/e2e/stack.Stack`` starts them."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "scripts"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import services  # noqa: E402

JWT_SECRET = "bench-jwt-secret-bench-jwt-secret-0123456789"


def start(prefix: str, latency_ms: float, extra_env: dict[str, str]) -> tuple[Path, Any, subprocess.Popen[bytes]]:
    """A fresh temporary directory, a migrated database and a private Redis in it, and the
    ``Stack`` over them (the caller starts its processes). Sets the environment the app reads,
    so it runs before anything imports ``common``. The caller terminates the Redis process."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    redis_url, redis_proc = services.start_private_redis(tmp / "redis")
    os.environ.update({
        "APP_ENV": "bench", "DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}", "CELERY_BROKER_URL": redis_url,
        "REDIS_URL": redis_url, "JWT_SECRET": JWT_SECRET,
    })
    from common.migrate import upgrade
    from tests.e2e.stack import Stack

    upgrade(os.environ["DATABASE_URL"])
    return tmp, Stack(tmp, JWT_SECRET, default_worker=False, latency_ms=latency_ms, extra_env=extra_env), redis_proc
