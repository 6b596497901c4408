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
    runs: dict[str, list[loadgen.Result]] = {name: [] for name, *_ in VARIANTS}
    try:
        for round_no in range(args.rounds + 1):  # round 0 warms every app up and is not counted
            for name, album, _ in VARIANTS:
                url = f"http://127.0.0.1:{ports[name]}/api/v1/albums/{album}"
                headers = [{"Authorization": f"Bearer {tokens.issue_session(f'user-{i}', {album: ['read']}, JWT_SECRET, 14400)}"}
                           for i in range(args.users)]
                seconds = 2.0 if round_no == 0 else args.seconds
                result = loadgen.run(url, None, headers, seconds, args.processes, args.connections, method="GET")
                if result.errors:
                    raise SystemExit(f"{name}: {result.errors} failed reads")
                if round_no:
                    runs[name].append(result)
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
    for name, *_ in VARIANTS:
        best = median_run(name)
        reads = sum(res.requests for res in runs[name])
        spread = ", ".join(f"{res.throughput:.0f}" for res in runs[name])
        print(f"{best.line(name)}   rounds: {spread} req/s   views recorded: {recorded[name]} (warm-up reads included)")
        if name != "off":
            print(f"  throughput ratio {name}/off: {best.throughput / off.throughput:.2f} (target >= 0.90)   "
                  f"p99 ratio: {best.percentile(99) / off.percentile(99):.2f}   reads measured: {reads}")
    print(f"median of per-round ratios on/off: "
          f"{statistics.median(on.throughput / base.throughput for on, base in zip(runs['on'], runs['off'])):.2f}")


if __name__ == "__main__":
    main()
