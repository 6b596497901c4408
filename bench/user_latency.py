"""The latency a user feels: from a photo's upload response to the album showing it ready.

A client uploads a batch with the form ``upload_done`` returned (the official SDK, straight to
the emulator, which analyses each photo and notifies the webhook), then watches the album as
the app would (``GET /api/v1/albums/<id>/images`` and ``GET /api/v1/albums/<id>``, polled every
``--poll-ms``). Per photo: upload response -> listed as ``ready``; p50 and p99 for each batch
size; and the count's lag: last photo ready -> ``images_count`` equal to the batch.

Baseline, same run: one ``explicit`` call for a photo's thumbnails straight to the emulator
(the Cloudinary work that stands between every upload and "ready" whatever the pipeline
does), median of 20; the ratio says how many such calls the pipeline's latency is worth.

    python bench/user_latency.py [--batches 6 200] [--latency-ms 50] [--poll-ms 50]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import private_stack  # noqa: E402



def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


class Watcher(threading.Thread):
    """Polls the album like a client: when each photo is first listed ready, when the count is right."""

    def __init__(self, stack: Any, album_id: str, expected: int, poll: float) -> None:
        super().__init__(daemon=True)
        self.stack, self.album_id, self.expected, self.poll = stack, album_id, expected, poll
        self.ready_at: dict[str, float] = {}
        self.counted_at: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            now = time.time()
            for image in self.stack.images(self.album_id):
                if image["status"] == "ready":
                    self.ready_at.setdefault(image["public_id"], now)
            if len(self.ready_at) >= self.expected and self.stack.album(self.album_id)["images_count"] == self.expected:
                self.counted_at = time.time()
                return
            self.stop.wait(self.poll)


def batch(stack: Any, photos: list[Path], size: int, threads: int, poll: float, timeout: float) -> dict[str, Any]:
    album = stack.new_album()
    form = stack.upload_done(album)["upload_form"]
    uploaded_at: dict[str, float] = {}
    watcher = Watcher(stack, album, size, poll)
    watcher.start()

    def upload(i: int) -> None:
        result = stack.upload(form, photos[i % len(photos)])
        uploaded_at[result["public_id"]] = time.time()

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(upload, range(size)))
    watcher.join(timeout)
    watcher.stop.set()
    if watcher.counted_at is None:
        raise SystemExit(f"batch of {size}: {len(watcher.ready_at)} ready after {timeout:.0f} s")
    latencies = [watcher.ready_at[pid] - uploaded_at[pid] for pid in uploaded_at]
    last_ready = max(watcher.ready_at.values())
    return {"p50": pct(latencies, 50), "p99": pct(latencies, 99), "max": max(latencies),
            "count_lag": watcher.counted_at - last_ready}


def explicit_baseline(stack: Any, photo: Path) -> float:
    """Median seconds of one thumbnails ``explicit`` call on an uploaded photo, straight to the emulator."""
    from common import cloudinary_client

    album = stack.new_album()
    form = stack.upload_done(album)["upload_form"]
    public_id = stack.upload(form, photo)["public_id"]
    took = []
    for _ in range(20):
        started = time.perf_counter()
        cloudinary_client.generate_derived(public_id, "authenticated")
        took.append(time.perf_counter() - started)
    return statistics.median(took)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[6, 200])
    parser.add_argument("--latency-ms", type=float, default=50.0, help="the emulator's added latency")
    parser.add_argument("--poll-ms", type=float, default=50.0, help="how often the client looks")
    parser.add_argument("--upload-threads", type=int, default=6)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()

    tmp, stack, redis_proc = private_stack.start("bench-latency-", args.latency_ms, {  # the Procfile's workers with production's timers
        "STAGE_LEASE": "30", "HEAL_INTERVAL": "10", "BROKER_VISIBILITY_TIMEOUT": "3600",
        "DROP_SAME_BYTES": "0",  # the fixtures re-sent: keep every copy
    })
    photos = sorted((ROOT / "tests" / "fixtures" / "photos").glob("*.jpg"))
    results = {}
    try:
        stack.start()
        stack.start_worker("fast", pool="prefork", concurrency=2, queues="fast")
        stack.start_worker("io", pool="threads", concurrency=16, queues="io")
        baseline = explicit_baseline(stack, photos[0])
        for size in args.batches:
            results[size] = batch(stack, photos, size, args.upload_threads, args.poll_ms / 1000, args.timeout)
    finally:
        stack.stop()
        redis_proc.terminate()

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; emulator latency "
          f"{args.latency_ms:.0f} ms; {args.upload_threads} upload threads; the client polls every {args.poll_ms:.0f} ms")
    print(f"baseline: one thumbnails explicit call straight to the emulator, median {baseline * 1000:.0f} ms")
    for size, r in results.items():
        print(f"batch of {size:4d}: upload response -> listed ready p50 {r['p50'] * 1000:6.0f} ms "
              f"({r['p50'] / baseline:.1f}x baseline), p99 {r['p99'] * 1000:6.0f} ms ({r['p99'] / baseline:.1f}x), "
              f"max {r['max'] * 1000:.0f} ms; count lag after the last ready {r['count_lag'] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
