"""A burst of uploads to one album, end to end, through the emulator with added latency.

Uploads N photos (the fixture photos, cycled) with the form upload_done returned, via the
official SDK, against the real stack (gunicorn web, a `fast` prefork worker and an `io` threads
worker as in the Procfile, Redis, the emulator with `--latency-ms`). Reports the time until
every photo is ready and the album counted, compared with the time the uploads alone took in the
same run, plus Celery tasks per photo and Admin API calls per photo.

    python bench/album_burst.py [--photos 500] [--latency-ms 50] [--upload-threads 8]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import private_stack  # noqa: E402



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=500)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--upload-threads", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()

    tmp, stack, redis_proc = private_stack.start("bench-burst-", args.latency_ms, {
        "BROKER_VISIBILITY_TIMEOUT": "3600", "ADMIN_BUDGET_RESERVE": "50",
        "DROP_SAME_BYTES": "0",  # the six fixtures re-sent N times: keep every copy
    })
    from tests.e2e.stack import wait_for
    photos = sorted((ROOT / "tests" / "fixtures" / "photos").glob("*.jpg"))
    try:
        stack.start()
        stack.start_worker("fast", pool="prefork", concurrency=2, queues="fast")
        stack.start_worker("io", pool="threads", concurrency=16, queues="io")
        album = stack.new_album()
        form = stack.upload_done(album)["upload_form"]

        started = time.monotonic()
        with ThreadPoolExecutor(args.upload_threads) as pool:
            list(pool.map(lambda i: stack.upload(form, photos[i % len(photos)]), range(args.photos)))
        uploaded = time.monotonic() - started

        def finished() -> bool:
            images = stack.images(album)
            return (len(images) == args.photos and all(i["status"] == "ready" for i in images)
                    and stack.album(album)["images_count"] == args.photos)

        wait_for(finished, args.timeout, interval=1.0, what="every photo ready and counted")
        total = time.monotonic() - started
        stats = stack.emulator.stats()
        tasks = stack.worker_log_lines("] received")
        recounts = stack.worker_log_lines('"msg": "recounted"')
    finally:
        stack.stop()
        redis_proc.terminate()

    n = args.photos
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{n} photos, emulator latency {args.latency_ms:.0f} ms, {args.upload_threads} upload threads")
    print(f"uploads alone (baseline):      {uploaded:7.1f} s  ({n / uploaded:.1f} photos/s)")
    print(f"until all ready and counted:   {total:7.1f} s  (ratio to baseline {total / uploaded:.2f})")
    print(f"Celery tasks per photo:        {tasks / n:7.2f}  (recount runs: {recounts})")
    print(f"Admin API calls per photo:     {stats['admin_calls'] / n:7.3f}  (resource calls: {stats['calls']['admin_resource']})")


if __name__ == "__main__":
    main()
