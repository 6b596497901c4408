"""The pipeline's own capacity: notifications in, photos ready and counted out.

For each album size N the photos are put in the emulator beforehand, untimed (its bulk seed
path: N assets sharing one stored image, tagged with the album), then their N signed upload
notifications are delivered to the webhook as fast as the web tier takes them (keep-alive
connections in threads), and the clock runs until every photo is ready, the album's
``images_count`` is N and the duplicates index holds every photo (each notification carries a
pHash of its own; ``--same-phash`` gives them all one, the index's worst case). The workers are
the Procfile's: a ``fast`` prefork worker (ingest, recount, index_duplicates) and ``io`` threads
workers (thumbnails through the emulator, with its added latency).

Baseline, same workers, same run: the throughput of a no-op task (``bench/noop_task.py``), N
of them on each queue, published all at once, ``--noop-rounds`` times (3); the median round is
the baseline (one round moved by a third from one run to the next on this 2-core machine). The
ratio of the pipeline's tasks/s to it is the figure (issue 13: >= 0.25 at 50 ms emulator
latency), and the time per photo as N grows should stay flat (what grows with the album shows
up there). Both sides are steady states: before the measured runs, ``--warmup`` photos (50) go
through the same stack uncounted, so the first N does not carry the fresh stack's one-time
costs alone.

    python bench/pipeline_capacity.py [--photos 200 1000 5000] [--processes 1 2 4]
                                      [--latency-ms 0 50] [--database-url URL]

``--processes P``: the fast worker gets P prefork children and the io queue P worker
processes of ``--io-threads`` threads each. One stack (Redis, emulator, gunicorn, workers,
beat with production timers) per P; a new album per (latency, N).
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import services  # noqa: E402

JWT_SECRET = "bench-jwt-secret-bench-jwt-secret-0123456789"


@dataclass
class Run:
    photos: int
    latency_ms: float
    delivered_s: float
    total_s: float
    tasks: int
    latencies_ms: list[float]
    count_lag_s: float
    #: From ready and counted to indexed (the index task is the last of a photo's tasks).
    index_lag_s: float
    cpu_s: dict[str, float]

    def pct(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def notification_bodies(album_id: str, count: int, same_phash: bool = False) -> list[bytes]:
    """The upload notifications of the album's seeded assets, as the emulator would send them:
    the listing's fields plus the analysis the signed form asks for (one Admin call for the
    shared image's analysis, one listing call per 500 assets; untimed).

    The seeded assets share one stored image, hence one pHash; each notification gets a pHash of
    its own (random, seeded by the album) unless ``same_phash``, as N different photos would have.
    N photos with one pHash are the duplicates index's worst case (every photo a near-duplicate
    of every other: N^2/2 edges, the index task's work growing with the album), not a pipeline's."""
    import cloudinary.api

    resources: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = cloudinary.api.resources_by_tag(album_id, type="authenticated", max_results=500, tags=True,
                                               **({"next_cursor": cursor} if cursor else {}))
        resources += page["resources"]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    assert len(resources) == count, (len(resources), count)
    analysis = cloudinary.api.resource(resources[0]["public_id"], type="authenticated", faces=True, colors=True,
                                       phash=True, image_metadata=True)
    extra = {key: analysis[key] for key in ("faces", "colors", "predominant", "phash", "image_metadata") if key in analysis}
    phashes = random.Random(album_id)
    return [json.dumps({"notification_type": "upload", **resource, **extra,
                        **({} if same_phash else {"phash": f"{phashes.getrandbits(64):016x}"}),
                        "tags": [album_id], "request_id": uuid.uuid4().hex}).encode() for resource in resources]


def deliver(url: str, bodies: list[bytes], secret: str, senders: int) -> dict[str, float]:
    """POST every body (signed as Cloudinary signs) over ``senders`` keep-alive connections;
    returns each public_id's acknowledgement time (``time.time()``). A non-200 is sent again."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    path = "/" + url.split("//", 1)[1].split("/", 1)[1]
    acked: dict[str, float] = {}
    lock = threading.Lock()
    todo = list(reversed(bodies))

    def sender() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        while True:
            with lock:
                if not todo:
                    break
                body = todo.pop()
            while True:
                ts = str(int(time.time()))
                headers = {"Content-Type": "application/json", "X-Cld-Timestamp": ts,
                           "X-Cld-Signature": hashlib.sha1(body + ts.encode() + secret.encode()).hexdigest()}
                try:
                    conn.request("POST", path, body=body, headers=headers)
                    response = conn.getresponse()
                    response.read()
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection(host, int(port), timeout=30)
                    continue
                if response.status == 200:
                    break
                time.sleep(0.05)
            with lock:
                acked[json.loads(body)["public_id"]] = time.time()
        conn.close()

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return acked


def album_state(album_id: str) -> tuple[int, int]:
    """(photos ready, the album's images_count), read from the database."""
    from sqlalchemy import func, select

    from common import db
    from common.models import STAGE_DONE, Album, Image

    with db.session_scope() as session:
        ready = session.scalar(select(func.count()).select_from(Image).where(
            Image.album_id == album_id, Image.metadata_status == STAGE_DONE, Image.thumbnails_status == STAGE_DONE))
        count = session.scalar(select(Album.images_count).where(Album.id == album_id))
    return ready or 0, count or 0


def indexed_count(album_id: str) -> int:
    """The album's photos the duplicates index holds (``album.index_duplicates`` ran for them)."""
    from sqlalchemy import func, select

    from common import db
    from common.models import ImageHash

    with db.session_scope() as session:
        return session.scalar(select(func.count()).select_from(ImageHash).where(ImageHash.album_id == album_id)) or 0


def ready_times(album_id: str) -> dict[str, float]:
    """Each image's last change (both stages done: when it became ready), as Unix time."""
    from datetime import timezone

    from sqlalchemy import select

    from common import db
    from common.models import Image

    with db.session_scope() as session:
        rows = session.execute(select(Image.public_id, Image.updated_at).where(Image.album_id == album_id)).all()
    return {pid: (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp() for pid, t in rows}


def noop_throughput(count: int, timeout: float) -> tuple[float, float]:
    """``count`` no-op tasks on each queue, published at once with the webhook's fast path;
    returns (seconds until all ran, tasks/s)."""
    from common.celery_app import app
    from common.config import get_settings
    from common.coordination import client as redis_client
    from common.fast_publish import publisher_for
    from noop_task import DONE_KEY

    r = redis_client()
    r.delete(DONE_KEY)
    publisher = publisher_for(app, get_settings().broker_url)
    assert publisher is not None
    started = time.monotonic()
    for _ in range(count):
        for queue in ("fast", "io"):
            publisher.publish("bench.noop", (), queue, "()")
    deadline = started + timeout
    while int(r.get(DONE_KEY) or 0) < 2 * count:
        if time.monotonic() > deadline:
            raise SystemExit(f"no-op tasks did not finish in {timeout:.0f} s")
        time.sleep(0.01)
    took = time.monotonic() - started
    return took, 2 * count / took


def process_roles(stack: Any) -> dict[str, list[int]]:
    """The pids of each kind of process of the stack (a process and its children)."""
    import psutil

    def tree(pid: int) -> list[int]:
        try:
            return [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    roles = {"web": tree(stack.web.pid), "emulator": tree(stack.emulator._process.pid),
             "beat": tree(stack.beat.pid), "bench": [os.getpid()]}
    for proc in stack.workers:
        log_name = Path(proc.args[proc.args.index("--hostname") + 1]).name
        if log_name.startswith("fast"):  # the prefork parent (consumer loop, acks, events) apart from its children
            roles["fast parent"] = [proc.pid]
            roles["fast children"] = tree(proc.pid)[1:]
        else:
            roles.setdefault("io workers", []).extend(tree(proc.pid))
    roles["redis"] = [p.pid for p in psutil.process_iter(["name", "cmdline"])
                      if p.info["name"] == "redis-server" and os.environ["CELERY_BROKER_URL"].rsplit(":", 1)[-1].split("/")[0]
                      in " ".join(p.info["cmdline"] or [])]
    return roles


def cpu_seconds(roles: dict[str, list[int]]) -> dict[str, float]:
    import psutil

    out = {}
    for role, pids in roles.items():
        total = 0.0
        for pid in pids:
            try:
                times = psutil.Process(pid).cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        out[role] = total
    return out


def run_once(stack: Any, photos: int, latency_ms: float, senders: int, timeout: float, same_phash: bool = False) -> Run:
    from common import db, tokens
    from common.models import Album
    from tests.e2e.stack import EMULATOR_SECRET

    stack.emulator.set_faults(latency_ms=latency_ms)
    album_id = stack.new_album()
    with db.session_scope() as session:
        org = session.get(Album, album_id).organization_id
    stack.emulator.seed(photos, tags=[album_id], prefix=f"{album_id}/", type="authenticated", interval=0.01)
    bodies = notification_bodies(album_id, photos, same_phash)
    token = tokens.notification_token("bench-user", album_id, org, JWT_SECRET, 14400)
    received_before = stack.worker_log_lines("] received")
    roles = process_roles(stack)
    cpu_before = cpu_seconds(roles)

    started = time.monotonic()
    acked = deliver(f"{stack.web_url}/api/v1/cloudinary?token={token}", bodies, EMULATOR_SECRET, senders)
    delivered = time.monotonic() - started
    deadline = started + timeout
    all_ready_at = counted_at = None
    # Until the duplicates index holds every photo too: the index tasks are part of the pipeline's
    # work, and left running they would spill into the next run's window.
    while True:
        ready, count = album_state(album_id)
        now = time.monotonic()
        if ready == photos and all_ready_at is None:
            all_ready_at = now
        if ready == photos and count == photos:
            counted_at = counted_at or now
            if indexed_count(album_id) == photos:
                break
        if now > deadline:
            raise SystemExit(f"N={photos}: {ready} ready, images_count {count}, {indexed_count(album_id)} indexed "
                             f"after {timeout:.0f} s")
        time.sleep(0.05)
    total = now - started
    cpu = {role: used - cpu_before[role] for role, used in cpu_seconds(roles).items()}
    time.sleep(1.0)  # let the last task's log line land
    tasks = stack.worker_log_lines("] received") - received_before
    ready_at = ready_times(album_id)
    latencies = [(ready_at[pid] - acked[pid]) * 1000 for pid in acked]
    return Run(photos, latency_ms, delivered, total, tasks, latencies, counted_at - all_ready_at, now - counted_at, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, nargs="+", default=[200, 1000, 5000])
    parser.add_argument("--processes", type=int, nargs="+", default=[2], help="worker processes per queue")
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 50.0], help="the emulator's added latency")
    parser.add_argument("--io-threads", type=int, default=16, help="threads per io worker process")
    parser.add_argument("--senders", type=int, default=16, help="connections delivering notifications")
    parser.add_argument("--database-url", default=None, help="default: a new SQLite file")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--noop-rounds", type=int, default=3, help="no-op baseline rounds (their median is the baseline)")
    parser.add_argument("--warmup", type=int, default=50,
                        help="photos run through the pipeline before the measured runs, not counted (0: none)")
    parser.add_argument("--same-phash", action="store_true",
                        help="every notification with the seeded image's pHash (the duplicates index's worst case)")
    parser.add_argument("--cpu-profile", metavar="DIR", default=None,
                        help="write the workers' CPU profiles (bench/cpu_profile.py) into DIR")
    parser.add_argument("--db-times", action="store_true",
                        help="with --cpu-profile: only the database calls' wall and CPU times, no cProfile")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"io: {args.io_threads} threads per process; {args.senders} delivering connections; "
          f"database: {'SQLite' if not args.database_url else args.database_url.split(':', 1)[0]}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-capacity-"))
    redis_url, redis_proc = services.start_private_redis(tmp / "redis")
    os.environ.update({
        "APP_ENV": "bench", "DATABASE_URL": args.database_url or f"sqlite:///{tmp / 'bench.db'}",
        "CELERY_BROKER_URL": redis_url, "REDIS_URL": redis_url, "JWT_SECRET": JWT_SECRET,
    })
    from common.migrate import upgrade
    from tests.e2e.stack import Stack

    upgrade(os.environ["DATABASE_URL"])
    if args.cpu_profile:
        Path(args.cpu_profile).mkdir(parents=True, exist_ok=True)  # each worker writes its own files there
    try:
        for processes in args.processes:
            # Production's timers (a heal every 10 s, 30 s leases), not the e2e tests' short ones.
            stack = Stack(tmp / f"p{processes}", JWT_SECRET, default_worker=False, latency_ms=0,
                          extra_env={"STAGE_LEASE": "30", "HEAL_INTERVAL": "10", "BROKER_VISIBILITY_TIMEOUT": "3600",
                                     "ADMIN_BUDGET_RESERVE": "50",
                                     "DROP_SAME_BYTES": "0",  # seeded assets may share their bytes
                                     "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'bench'}",
                                     **({"BENCH_CPU_PROFILE": str(Path(args.cpu_profile).resolve()),
                                         "BENCH_CPU_PROFILE_DB_ONLY": "1" if args.db_times else "0"}
                                        if args.cpu_profile else {})})
            run_stack(stack, processes, args)
    finally:
        redis_proc.terminate()


def run_stack(stack: Any, processes: int, args: argparse.Namespace) -> None:
    runs: list[Run] = []
    try:
        stack.start()
        include = ("--include", "noop_task,cpu_profile" if args.cpu_profile else "noop_task")
        stack.start_worker("fast", pool="prefork", concurrency=processes, queues="fast", extra_args=include)
        for i in range(processes):
            stack.start_worker(f"io{i}", pool="threads", concurrency=args.io_threads, queues="io", extra_args=include)
        rounds = sorted(noop_throughput(max(args.photos), args.timeout)[1] for _ in range(args.noop_rounds))
        noop_rate = statistics.median(rounds)
        print(f"\n== {processes} worker process(es) per queue; no-op baseline: {2 * max(args.photos)} tasks a round, "
              f"{', '.join(f'{rate:.0f}' for rate in rounds)} tasks/s: median {noop_rate:.0f} tasks/s", flush=True)
        if args.warmup:
            # The no-op baseline is a steady state; so is what it is compared with. A fresh stack's
            # first photos pay one-time costs (the emulator's first face-aware crop, the workers'
            # first SQL statements compiled, the SDK's first calls), which N=200 would carry alone.
            warm = run_once(stack, args.warmup, args.latency_ms[0], args.senders, args.timeout, args.same_phash)
            print(f"warm-up (not counted): {args.warmup} photos in {warm.total_s:.1f} s", flush=True)
        for latency in args.latency_ms:
            for photos in args.photos:
                run = run_once(stack, photos, latency, args.senders, args.timeout, args.same_phash)
                runs.append(run)
                rate = run.tasks / run.total_s
                print(f"N={photos:5d} latency {latency:3.0f} ms: delivered in {run.delivered_s:6.1f} s "
                      f"({photos / run.delivered_s:5.0f}/s); all ready+counted+indexed {run.total_s:6.1f} s: "
                      f"{photos / run.total_s:6.1f} photos/s, {rate:6.1f} tasks/s ({run.tasks / photos:.2f}/photo), "
                      f"ratio to no-op {rate / noop_rate:.2f}; "
                      f"notification->ready p50 {run.pct(50) / 1000:.2f} s p95 {run.pct(95) / 1000:.2f} s "
                      f"p99 {run.pct(99) / 1000:.2f} s; count lag {run.count_lag_s:.2f} s; "
                      f"index lag {run.index_lag_s:.2f} s (ready+counted at {run.total_s - run.index_lag_s:.1f} s); "
                      f"{run.total_s / photos * 1000:.1f} ms/photo", flush=True)
                print("    CPU ms per photo: " + ", ".join(f"{role} {used / photos * 1000:.1f}" for role, used in run.cpu_s.items())
                      + f"; all {sum(run.cpu_s.values()) / photos * 1000:.1f} (wall {run.total_s / photos * 1000:.1f} on "
                      f"{os.cpu_count()} cores)", flush=True)
    finally:
        stack.stop()
    for latency in args.latency_ms:
        mine = [r for r in runs if r.latency_ms == latency]
        if len(mine) > 1:
            first = mine[0]
            growth = ", ".join(f"N={r.photos}: {(r.total_s / r.photos) / (first.total_s / first.photos):.2f}x"
                               for r in mine[1:])
            print(f"time per photo vs N={first.photos} at {latency:.0f} ms: {growth}")


if __name__ == "__main__":
    main()
