"""Memory of each process type after a burst, and whether it grows burst after burst.

Each burst is ``--photos`` photos through the whole pipeline into a new album: seeded in the
emulator and notified to the webhook as fast as it takes them (as bench/pipeline_capacity.py
does), plus ``--uploads`` real uploads through the SDK, so the emulator's analysis runs too,
until all are ready and counted. After the first and the last of ``--bursts`` bursts it prints
each process type's peak RSS (the kernel's high-water mark, ``VmHWM``) and current RSS: web
worker (gunicorn child), fast worker child (prefork), io worker (threads), beat, the emulator,
and the two parents. Baseline, same run: the same processes' RSS when started and idle, so
the growth is what the work added. Targets (issue 13): workers <= 150 MB, web <= 100 MB.

    python bench/memory.py [--photos 1000] [--bursts 5] [--uploads 20] [--latency-ms 50]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))

import pipeline_capacity  # noqa: E402
import private_stack  # noqa: E402

JWT_SECRET = private_stack.JWT_SECRET
MB = 1024 * 1024


def processes(stack: Any) -> dict[str, list[psutil.Process]]:
    """The stack's processes by type."""
    web = psutil.Process(stack.web.pid)
    kinds: dict[str, list[psutil.Process]] = {"web master": [web], "web worker": web.children()}
    for proc in stack.workers:
        parent = psutil.Process(proc.pid)
        if "prefork" in proc.args:
            kinds["fast worker parent"] = [parent]
            kinds["fast worker child"] = parent.children()
        else:
            kinds.setdefault("io worker", []).append(parent)
    kinds["beat"] = [psutil.Process(stack.beat.pid)]
    kinds["emulator"] = [psutil.Process(stack.emulator._process.pid)]
    return kinds


def peak_rss(proc: psutil.Process) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return proc.memory_info().rss


def snapshot(stack: Any) -> dict[str, tuple[int, int]]:
    """Per type: (largest peak RSS, largest current RSS) over its processes."""
    return {kind: (max(peak_rss(p) for p in procs), max(p.memory_info().rss for p in procs))
            for kind, procs in processes(stack).items() if procs}


def burst(stack: Any, photos: int, uploads: int, fixtures: list[Path], timeout: float) -> float:
    from common import db, tokens
    from common.models import Album
    from tests.e2e.stack import EMULATOR_SECRET

    album_id = stack.new_album()
    with db.session_scope() as session:
        org = session.get(Album, album_id).organization_id
    stack.emulator.seed(photos, tags=[album_id], prefix=f"{album_id}/", type="authenticated", interval=0.01)
    bodies = pipeline_capacity.notification_bodies(album_id, photos)
    token = tokens.notification_token("bench-user", album_id, org, JWT_SECRET, 14400)
    started = time.monotonic()
    form = stack.upload_done(album_id)["upload_form"]
    for i in range(uploads):
        stack.upload(form, fixtures[i % len(fixtures)])
    pipeline_capacity.deliver(f"{stack.web_url}/api/v1/cloudinary?token={token}", bodies, EMULATOR_SECRET, 16)
    total = photos + uploads
    while pipeline_capacity.album_state(album_id) != (total, total):
        if time.monotonic() - started > timeout:
            raise SystemExit(f"burst not done after {timeout:.0f} s: {pipeline_capacity.album_state(album_id)}")
        time.sleep(0.2)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--bursts", type=int, default=5)
    parser.add_argument("--uploads", type=int, default=20, help="real uploads (emulator analysis) per burst")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()

    tmp, stack, redis_proc = private_stack.start("bench-memory-", args.latency_ms, {
        "STAGE_LEASE": "30", "HEAL_INTERVAL": "10", "BROKER_VISIBILITY_TIMEOUT": "3600", "ADMIN_BUDGET_RESERVE": "50",
        "DROP_SAME_BYTES": "0",  # the fixtures re-sent each burst: keep every copy
    })
    fixtures = sorted((ROOT / "tests" / "fixtures" / "photos").glob("*.jpg"))
    snaps: dict[str, dict[str, tuple[int, int]]] = {}
    try:
        stack.start()
        stack.start_worker("fast", pool="prefork", concurrency=2, queues="fast")
        stack.start_worker("io", pool="threads", concurrency=16, queues="io")
        time.sleep(2)
        snaps["idle"] = snapshot(stack)
        for n in range(1, args.bursts + 1):
            took = burst(stack, args.photos, args.uploads, fixtures, args.timeout)
            print(f"burst {n}: {args.photos} notified + {args.uploads} uploaded, all ready and counted in {took:.1f} s",
                  flush=True)
            if n in (1, args.bursts):
                snaps[f"after {n}"] = snapshot(stack)
    finally:
        stack.stop()
        redis_proc.terminate()

    last = f"after {args.bursts}"
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"fast: prefork x2, io: threads x16; SQLite; emulator latency {args.latency_ms:.0f} ms")
    print(f"{'process':<20} {'idle RSS':>9} {'peak after 1':>13} {'RSS after 1':>12} {'peak after ' + str(args.bursts):>13} "
          f"{'RSS after ' + str(args.bursts):>12} {'growth 1->' + str(args.bursts):>11}  target")
    for kind in snaps["idle"]:
        idle = snaps["idle"][kind][1] / MB
        peak1, rss1 = (v / MB for v in snaps["after 1"][kind])
        peakn, rssn = (v / MB for v in snaps[last][kind])
        target = 100 if kind.startswith("web") else 150 if "worker" in kind else None
        verdict = "" if target is None else f"<= {target} MB: {'yes' if peakn <= target else 'NO'}"
        print(f"{kind:<20} {idle:8.1f}M {peak1:12.1f}M {rss1:11.1f}M {peakn:12.1f}M {rssn:11.1f}M {rssn - rss1:+10.1f}M  {verdict}")


if __name__ == "__main__":
    main()
