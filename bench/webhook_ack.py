"""Webhook acknowledgement throughput and latency against a bare Flask endpoint.

Both apps run under the same gunicorn settings and take the same load (bench/loadgen.py);
the script prints each one's throughput and p50/p99 and the ratios, for three alternated
pairs of rounds on each load tool: bench/loadgen.py (plain Python) and wrk (2 threads, 16
connections). Target (issue 13): the webhook reaches at least 0.50 of the bare endpoint's
throughput on both, with p99 within 2x.

    python bench/webhook_ack.py [--seconds 10] [--workers 2] [--tool both] [--pairs 3]

It needs a Redis: CELERY_BROKER_URL/REDIS_URL if reachable, else a private one it starts.
Nothing consumes the queue during the run; it is purged after every round.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
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
         "--worker-class", "gthread", "--threads", "4", "--log-level", "warning",
         # As gunicorn.conf.py: gunicorn 25.1+ opens one control socket per user, and the two
         # servers of this script would take it from each other.
         "--no-control-socket", app],
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
    parser.add_argument("--tool", choices=("loadgen", "wrk", "both"), default="both",
                        help="wrk needs the wrk binary (apt: wrk); loadgen is plain Python")
    parser.add_argument("--pairs", type=int, default=3, help="alternated bare/webhook rounds per tool")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--wrk-connections", type=int, default=16)
    args = parser.parse_args()

    if args.tool in ("wrk", "both") and shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk), or pass --tool loadgen")
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

    servers = {}
    masters: dict[str, psutil.Process] = {}
    try:
        for name, app, port in (("bare", "bare_app:app", 18081), ("webhook", "web:create_app()", 18082)):
            app_env = dict(env, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'bench'}")
            servers[name] = (gunicorn(app, port, args.workers, app_env), f"http://127.0.0.1:{port}/api/v1/cloudinary?token={token}")
            masters[name] = psutil.Process(servers[name][0].pid)
            check = requests.post(servers[name][1], data=body, headers=headers, timeout=5)
            assert check.status_code == 200, check.text
        tools = ["loadgen", "wrk"] if args.tool == "both" else [args.tool]
        lua = tmp / "post.lua"
        lua.write_text(wrk_script(body, headers))
        for name, (_, url) in servers.items():  # warm up
            loadgen.run(url, body, headers, seconds=2, processes=args.processes, connections=args.connections)
        rows: dict[str, list[tuple[Measured, Measured]]] = {tool: [] for tool in tools}
        published = purge(redis_url)
        for pair in range(args.pairs):
            for tool in tools:
                # Alternate which side goes first, so a drift in the machine's load hits both alike.
                order = ("bare", "webhook") if pair % 2 == 0 else ("webhook", "bare")
                got = {name: measure(tool, servers[name][1], body, headers, lua, args, masters[name]) for name in order}
                published += purge(redis_url)  # each round starts from an empty queue, as the last did
                rows[tool].append((got["bare"], got["webhook"]))
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=10)

    queued = purge(redis_url)
    if redis_proc:
        redis_proc.terminate()

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"gunicorn gthread {args.workers}x4; {args.pairs} alternated pairs of {args.seconds:.0f} s")
    for tool, pairs in rows.items():
        load = (f"wrk {args.wrk_threads} threads x {args.wrk_connections} connections" if tool == "wrk"
                else f"loadgen {args.processes} processes x {args.connections} connections")
        print(f"\n{load}:")
        for i, (bare, hook) in enumerate(pairs, 1):
            print(f"  pair {i}: bare {bare.rate:7.0f} req/s p50 {bare.p50:5.2f} ms p99 {bare.p99:6.2f} ms | "
                  f"webhook {hook.rate:7.0f} req/s p50 {hook.p50:5.2f} ms p99 {hook.p99:6.2f} ms | "
                  f"ratio {hook.rate / bare.rate:.2f}, p99 {hook.p99 / bare.p99:.2f}; server CPU per request "
                  f"{bare.cpu_us:.0f} / {hook.cpu_us:.0f} us = {bare.cpu_us / hook.cpu_us:.2f}  (errors {bare.errors}/{hook.errors})")
        ratios = sorted(hook.rate / bare.rate for bare, hook in pairs)
        p99s = sorted(hook.p99 / bare.p99 for bare, hook in pairs)
        cpus = sorted(bare.cpu_us / hook.cpu_us for bare, hook in pairs)
        print(f"  median throughput ratio webhook/bare: {ratios[len(ratios) // 2]:.2f} (target >= 0.50); "
              f"median p99 ratio {p99s[len(p99s) // 2]:.2f} (target <= 2.0); "
              f"CPU-bound ratio (bare CPU per request / webhook's) {cpus[len(cpus) // 2]:.2f}")
    print(f"ingest tasks published during the run (and purged): {published + queued}")


@dataclass
class Measured:
    rate: float
    p50: float
    p99: float
    errors: int
    cpu_us: float


def purge(redis_url: str) -> int:
    """Empty the ``fast`` queue (nothing consumes it here); how many tasks it held."""
    import redis

    client = redis.Redis.from_url(redis_url)
    held = client.llen("fast")
    client.delete("fast")
    return int(held)


def wrk_script(body: bytes, headers: dict[str, str]) -> str:
    """wrk's Lua setup for one POST with this body and these headers."""
    lines = ['wrk.method = "POST"', f"wrk.body = [==[{body.decode()}]==]"]
    lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items()]
    return "\n".join(lines) + "\n"


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            raise SystemExit(f"gunicorn process {proc.pid} exited during a round: its figures would be wrong") from None
        total += times.user + times.system
    return total


def measure(tool: str, url: str, body: bytes, headers: dict[str, str], lua: Path, args: argparse.Namespace,
            master: psutil.Process) -> Measured:
    """One round; with the CPU time the server's processes spent per request (the steadier figure
    on a shared machine: throughput follows whatever else runs, CPU per request much less)."""
    procs = [master, *master.children(recursive=True)]  # now: gunicorn may have replaced a worker
    cpu_before = cpu_seconds(procs)
    if tool == "loadgen":
        result = loadgen.run(url, body, headers, args.seconds, args.processes, args.connections)
        cpu = (cpu_seconds(procs) - cpu_before) / max(1, len(result.latencies_ms)) * 1e6
        return Measured(result.throughput, result.percentile(50), result.percentile(99), result.errors, cpu)
    out = subprocess.run(["wrk", "-t", str(args.wrk_threads), "-c", str(args.wrk_connections), "-d", f"{args.seconds:.0f}s",
                          "--latency", "-s", str(lua), url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0

    def ms(percent: str) -> float:
        value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    requests_done = int(re.search(r"(\d+) requests in", out).group(1))
    return Measured(rate, ms("50"), ms("99"), errors, (cpu_seconds(procs) - cpu_before) / max(1, requests_done) * 1e6)


if __name__ == "__main__":
    main()
