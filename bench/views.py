"""``GET /api/v1/albums/<id>`` throughput with view counting off and on, same run.

Three copies of the app under the same gunicorn settings (bench/webhook_ack.py's), each reading
its own album with read-only tokens of ``--users`` users that every load connection goes round:

- ``off``: ``VIEW_COUNTING=0``, the read makes no Redis call (the baseline);
- ``on``: every read runs the view script (one round trip); a user's later reads fall within
  the 30-minute window, so after the first round most reads are no new view;
- ``on, every read a view``: ``VIEW_WINDOW=1``, so a user coming round again after a second is
  a new view (``SET`` + ``HINCRBY`` as well).

The loads are interleaved (``--rounds`` of off, on, on-every) so that a busy machine slows all
three alike; each variant's median round is reported, and its ratio to ``off``. Target (issue
#15): ``on`` >= 0.9 x ``off``.

On a machine shared with other work, throughput moves by tens of percent from one round to the
next. So the script also measures what each read costs in CPU: the CPU time of the app's
gunicorn processes plus the Redis server's over the round, per read. The ratio of those costs
(off / on) is the throughput ratio the server reaches when CPU-bound, and it barely moves with
the load beside it.

    python bench/views.py [--seconds 8] [--rounds 3] [--users 2000]

Starts a private Redis and a SQLite database in a temporary directory; no worker folds the views
during the run (they stay pending; their number is printed as a check).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))

import loadgen  # noqa: E402
import psutil  # noqa: E402
import services  # noqa: E402
from webhook_ack import gunicorn  # noqa: E402

JWT_SECRET = "bench-jwt-secret-bench-jwt-secret-0123456789"
#: name, album, environment
VARIANTS = (
    ("off", "BENCHOFF", {"VIEW_COUNTING": "0"}),
    ("on", "BENCHON", {"VIEW_COUNTING": "1"}),
    ("on-every", "BENCHEVERY", {"VIEW_COUNTING": "1", "VIEW_WINDOW": "1"}),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="load per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=2000, help="distinct readers (tokens) the load goes round")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per app")
    parser.add_argument("--processes", type=int, default=2, help="load generator processes")
    parser.add_argument("--connections", type=int, default=4, help="keep-alive connections per load process")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-views-"))
    redis_url, redis_proc = services.start_private_redis(tmp / "redis")
    os.environ.update({
        "APP_ENV": "bench", "DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}", "CELERY_BROKER_URL": redis_url,
        "REDIS_URL": redis_url, "JWT_SECRET": JWT_SECRET, "PYTHONPATH": str(ROOT),
    })
    import redis

    from common import db, tokens, views
    from common.migrate import upgrade
    from common.models import Album, Organization

    upgrade(os.environ["DATABASE_URL"])
    with db.session_scope() as session:
        session.add(Organization(id="bench-org", name="bench"))
        session.flush()
        session.add_all(Album(id=album, organization_id="bench-org") for _, album, _ in VARIANTS)

    ports = {name: services.free_port() for name, *_ in VARIANTS}
    procs = {name: gunicorn("web:create_app()", ports[name], args.workers, {**os.environ, **env}) for name, _, env in VARIANTS}
    # The processes whose CPU a read costs: the app's gunicorn master and workers, and Redis.
    server = {name: [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)] + [psutil.Process(redis_proc.pid)]
              for name, proc in procs.items()}
    runs: dict[str, list[loadgen.Result]] = {name: [] for name, *_ in VARIANTS}
    cpu_per_read: dict[str, list[float]] = {name: [] for name, *_ in VARIANTS}
    try:
        for round_no in range(args.rounds + 1):  # round 0 warms every app up and is not counted
            for name, album, _ in VARIANTS:
                url = f"http://127.0.0.1:{ports[name]}/api/v1/albums/{album}"
                headers = [{"Authorization": f"Bearer {tokens.issue_session(f'user-{i}', {album: ['read']}, JWT_SECRET, 14400)}"}
                           for i in range(args.users)]
                seconds = 2.0 if round_no == 0 else args.seconds
                cpu_before = cpu_seconds(server[name])
                result = loadgen.run(url, None, headers, seconds, args.processes, args.connections, method="GET")
                cpu = cpu_seconds(server[name]) - cpu_before
                if result.errors:
                    raise SystemExit(f"{name}: {result.errors} failed reads")
                if round_no:
                    runs[name].append(result)
                    cpu_per_read[name].append(cpu / result.requests)
        r = redis.Redis.from_url(redis_url)
        recorded = {name: int(r.hget(views.PENDING_KEY, album) or 0) for name, album, _ in VARIANTS}
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(timeout=10)
        redis_proc.terminate()

    def median_run(name: str) -> loadgen.Result:
        return sorted(runs[name], key=lambda res: res.throughput)[len(runs[name]) // 2]

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"gunicorn gthread {args.workers}x4; load {args.processes}x{args.connections} connections; "
          f"{args.rounds} rounds x {args.seconds:.0f} s per variant, interleaved; {args.users} users")
    off = median_run("off")
    off_cpu = statistics.median(cpu_per_read["off"])
    for name, *_ in VARIANTS:
        best = median_run(name)
        cpu = statistics.median(cpu_per_read[name])
        reads = sum(res.requests for res in runs[name])
        spread = ", ".join(f"{res.throughput:.0f}" for res in runs[name])
        print(f"{best.line(name)}   rounds: {spread} req/s")
        print(f"  CPU per read (gunicorn + Redis): {cpu * 1e6:.0f} us (rounds: "
              f"{', '.join(f'{c * 1e6:.0f}' for c in cpu_per_read[name])})   reads: {reads}   "
              f"views recorded: {recorded[name]} (warm-up reads included)")
        if name != "off":
            print(f"  {name}/off: throughput {best.throughput / off.throughput:.2f}, "
                  f"CPU-bound throughput (CPU per read off/{name}) {off_cpu / cpu:.2f} (target >= 0.90), "
                  f"p99 {best.percentile(99) / off.percentile(99):.2f}")


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        times = process.cpu_times()
        total += times.user + times.system
    return total


if __name__ == "__main__":
    main()
