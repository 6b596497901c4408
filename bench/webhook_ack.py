"""Webhook acknowledgement throughput and latency against a bare Flask endpoint.

Both apps run under the same gunicorn settings and take the same load (bench/loadgen.py);
the script prints each one's throughput and p50/p99 and the ratios. Target (issue #4): the
webhook reaches at least 0.4 of the bare endpoint's throughput, with p99 within 3x.

    python bench/webhook_ack.py [--seconds 10] [--workers 2] [--connections 4]

It needs a Redis: CELERY_BROKER_URL/REDIS_URL if reachable, else a private one it starts.
Nothing consumes the queue during the run; the queue is purged at the end.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))

import loadgen  # noqa: E402
import services  # noqa: E402

SECRET = "bench-cloudinary-secret"
JWT_SECRET = "bench-jwt-secret-bench-jwt-secret-0123456789"
ALBUM = "00100000123BB25"


def gunicorn(app: str, port: int, workers: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
         "--worker-class", "gthread", "--threads", "4", "--log-level", "warning", app],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/", timeout=1)
            return proc
        except requests.RequestException:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{app} did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers for both apps")
    parser.add_argument("--processes", type=int, default=2, help="load generator processes")
    parser.add_argument("--connections", type=int, default=4, help="keep-alive connections per load process")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-webhook-"))
    redis_url = os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL")
    redis_proc = None
    if not redis_url or not services.reachable(redis_url):
        redis_url, redis_proc = services.start_private_redis(tmp / "redis")

    env = {
        **os.environ, "PYTHONPATH": str(ROOT), "APP_ENV": "bench",
        "DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}", "CELERY_BROKER_URL": redis_url, "REDIS_URL": redis_url,
        "JWT_SECRET": JWT_SECRET, "CLOUDINARY_URL": f"cloudinary://key:{SECRET}@cloud",
    }
    subprocess.run([sys.executable, "-m", "flask", "--app", "web", "db", "upgrade"], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)

    from common import tokens

    token = tokens.notification_token("bench-user", ALBUM, "bench-org", JWT_SECRET, 14400)
    body = json.dumps({
        "notification_type": "upload", "asset_id": "3515c6000a548515f1134043f9785c2f", "public_id": "wx7qglq1kkmxyx6vvmnk",
        "version": 1719307544, "width": 864, "height": 576, "format": "jpg", "resource_type": "image",
        "created_at": "2024-06-25T09:25:44Z", "tags": [ALBUM], "bytes": 120253, "type": "authenticated",
        "faces": [[98, 74, 61, 83]], "colors": [["#162E02", 6.7], ["#385B0C", 6.3]],
        "predominant": {"google": [["yellow", 52.9], ["pink", 13.5]]}, "phash": "ba19c8ab5fa05a59",
        "image_metadata": {"Make": "Canon", "Model": "EOS 5D"},
    }).encode()
    # The signature covers the timestamp, which must stay fresh for the run: sign "now".
    ts = str(int(time.time()))
    headers = {"Content-Type": "application/json", "X-Cld-Timestamp": ts,
               "X-Cld-Signature": hashlib.sha1(body + ts.encode() + SECRET.encode()).hexdigest()}

    results = {}
    for name, app, port in (("bare", "bare_app:app", 18081), ("webhook", "web:create_app()", 18082)):
        app_env = dict(env, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'bench'}")
        proc = gunicorn(app, port, args.workers, app_env)
        try:
            url = f"http://127.0.0.1:{port}/api/v1/cloudinary?token={token}"
            check = requests.post(url, data=body, headers=headers, timeout=5)
            assert check.status_code == 200, check.text
            loadgen.run(url, body, headers, seconds=2, processes=args.processes, connections=args.connections)  # warm up
            results[name] = loadgen.run(url, body, headers, args.seconds, args.processes, args.connections)
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    import redis

    r = redis.Redis.from_url(redis_url)
    queued = r.llen("fast")
    r.delete("fast")
    if redis_proc:
        redis_proc.terminate()

    bare, hook = results["bare"], results["webhook"]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"gunicorn gthread {args.workers}x4; load {args.processes}x{args.connections} connections, {args.seconds:.0f} s")
    print(bare.line("bare"))
    print(hook.line("webhook"))
    print(f"ingest tasks published during the run (and purged): {queued}")
    print(f"throughput ratio webhook/bare: {hook.throughput / bare.throughput:.2f} (target >= 0.40)")
    print(f"p99 ratio webhook/bare:        {hook.percentile(99) / bare.percentile(99):.2f} (target <= 3.0)")


if __name__ == "__main__":
    main()
