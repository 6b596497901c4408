"""The webhook's publish behind Redis Sentinel: what a ``sentinel://`` broker costs per publish.

Three ways to put one ``ingest`` task (and its ``task-sent`` event) on the ``fast`` queue:

- baseline: the fast path (``common/fast_publish.py``) on a ``redis://`` URL to the master;
- the same fast path on a ``sentinel://`` URL (``common/redis_conn.py``: the master found through
  the Sentinel, then the same pipelined round trip);
- Celery's own ``send_task`` through kombu's Sentinel transport (what the webhook would cost if
  it fell back to Celery's publish for a Sentinel broker).

    python bench/sentinel_publish.py [--publishes 3000] [--rounds 5]

It starts a private master, a replica and one Sentinel on loopback (the system redis-server),
and prints the median cost per publish of each and the ratios to the baseline.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import services  # noqa: E402
from tests.redis_sentinel import redis_server_cmd, sentinel_cmd  # noqa: E402

PASSWORD = "bench-sentinel-password"
MASTER = "bench"
QUEUE = "fast"


def _wait(predicate, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{what} did not come up")


def start(tmp: Path) -> tuple[list[subprocess.Popen[bytes]], int, int]:
    binary = services.redis_binary()
    master_port, replica_port, sentinel_port = (services.free_port() for _ in range(3))
    dirs = {name: tmp / name for name in ("master", "replica", "sentinel")}
    for d in dirs.values():
        d.mkdir()
    procs = [
        subprocess.Popen(redis_server_cmd(binary, "127.0.0.1", master_port, dirs["master"], PASSWORD)),
        subprocess.Popen(redis_server_cmd(binary, "127.0.0.1", replica_port, dirs["replica"], PASSWORD,
                                          replicaof=("127.0.0.1", master_port))),
    ]
    replica = redis.Redis(port=replica_port, password=PASSWORD)
    _wait(lambda: replica.info("replication")["master_link_status"] == "up", "the replica")
    procs.append(subprocess.Popen(sentinel_cmd(binary, dirs["sentinel"], "127.0.0.1", sentinel_port, MASTER,
                                               ("127.0.0.1", master_port), PASSWORD, quorum=1)))
    sentinel = redis.Redis(port=sentinel_port, decode_responses=True)
    _wait(lambda: int(sentinel.sentinel_master(MASTER)["num-slaves"]) == 1, "the Sentinel")
    return procs, master_port, sentinel_port


def per_publish_us(publish, n: int) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    for _ in range(n):
        publish()
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--publishes", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-sentinel-"))
    procs, master_port, sentinel_port = start(tmp)
    try:
        redis_url = f"redis://:{PASSWORD}@127.0.0.1:{master_port}/0"
        sentinel_url = f"sentinel://:{PASSWORD}@127.0.0.1:{sentinel_port}/0"
        # The Celery app (and the settings) read the broker from the environment at import.
        os.environ.update({"CELERY_BROKER_URL": sentinel_url, "REDIS_MASTER_NAME": MASTER})
        from common.fast_publish import RedisTaskPublisher
        from common.celery_app import app

        args_ = ("ALBUM", {"public_id": "p", "notification_type": "upload"}, "user")
        direct = RedisTaskPublisher(app, redis_url)
        via_sentinel = RedisTaskPublisher(app, sentinel_url)
        ways = {
            "fast path, redis:// (baseline)": lambda: direct.publish("album.ingest", args_, QUEUE, "x"),
            "fast path, sentinel://": lambda: via_sentinel.publish("album.ingest", args_, QUEUE, "x"),
            "Celery send_task, sentinel://": lambda: app.send_task("album.ingest", args=args_, argsrepr="x",
                                                                    kwargsrepr="{}"),
        }
        results: dict[str, list[float]] = {name: [] for name in ways}
        master = redis.Redis(port=master_port, password=PASSWORD)
        for name, publish in ways.items():  # warm-up: connections, pools, the Sentinel lookup
            per_publish_us(publish, 200)
        for _ in range(args.rounds):  # interleaved, so machine noise hits all three alike
            for name, publish in ways.items():
                results[name].append(per_publish_us(publish, args.publishes))
            master.delete(QUEUE)
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
              f"{args.rounds} rounds x {args.publishes} publishes, median per publish")
        base = statistics.median(results["fast path, redis:// (baseline)"])
        for name, values in results.items():
            median = statistics.median(values)
            print(f"{name:34} {median:7.0f} us  ratio {median / base:.2f}  (rounds {min(values):.0f}-{max(values):.0f} us)")
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
