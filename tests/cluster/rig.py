"""The product deployed on several hosts (network namespaces, tests/cluster/netns.py):

    data        PostgreSQL (a private initdb cluster) and Redis (the broker; the master with Sentinel)
    redis-2     a Redis replica and a Sentinel          (Sentinel rigs only)
    redis-3     a Sentinel                               (Sentinel rigs only)
    web-1/2     gunicorn serving web:create_app()
    lb          the round-robin balancer PUBLIC_URL points at (Cloudinary's notifications)
    worker-1..3 a `fast` worker (prefork) and an `io` worker (threads); beat on worker-1
    cloudinary  the emulator
    client      the test process itself, in the root namespace (10.231.0.1)

Each process gets only the environment a deployment would give it (its own DATABASE_URL,
CELERY_BROKER_URL, CLOUDINARY_URL, PUBLIC_URL, JWT_SECRET...), not the test's.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import psycopg
import redis
import requests

from tests.cluster import netns
from tests.e2e.stack import wait_for
from tests.redis_sentinel import redis_server_cmd, sentinel_cmd

ROOT = Path(__file__).resolve().parents[2]
#: Debian's PostgreSQL server binaries (the newest installed major version).
PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name),
             default=Path("/usr/lib/postgresql/15/bin"))

ADDRESSES = {
    "lb": "10.231.0.5",
    "data": "10.231.0.10",
    "redis-2": "10.231.0.11",
    "redis-3": "10.231.0.12",
    "web-1": "10.231.0.21",
    "web-2": "10.231.0.22",
    "worker-1": "10.231.0.31",
    "worker-2": "10.231.0.32",
    "worker-3": "10.231.0.33",
    "cloudinary": "10.231.0.40",
}
WEB_HOSTS = ("web-1", "web-2")
WORKER_HOSTS = ("worker-1", "worker-2", "worker-3")
SENTINEL_HOSTS = ("data", "redis-2", "redis-3")
WEB_PORT = 8000
EMULATOR_PORT = 9443
REDIS_PORT = 6379
SENTINEL_PORT = 26379
PG_PORT = 5432
MASTER_NAME = "album"
API_KEY = "614335564976464"


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class TaskRun:
    host: str
    worker: str
    name: str
    task_id: str
    event: str  # received | succeeded
    ts: float


#: Access log lines (gunicorn.conf.py's format: "%(r)s" %(s)s ...).
_STATUS = re.compile(r'HTTP/[\d.]+" (\d{3}) ')
_WEBHOOK_200 = re.compile(r'"POST /api/v1/cloudinary\?\S* HTTP/[\d.]+" 200 ')
_TASK_LINE = re.compile(r"Task (album\.\w+)\[([0-9a-f-]{36})\] (received|succeeded)")


class Cluster:
    def __init__(self, tmp: Path, sentinel: bool = False, visibility_timeout: int = 20) -> None:
        self.tmp = tmp
        self.sentinel = sentinel
        self.visibility_timeout = visibility_timeout
        hosts = [h for h in ADDRESSES if sentinel or h not in ("redis-2", "redis-3")]
        self.net = netns.Network({h: ADDRESSES[h] for h in hosts})
        self.logs = tmp / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        # Fresh secrets per run; the rig checks at the end that no log holds any of them.
        self.secrets = {
            "JWT_SECRET": secrets.token_urlsafe(48),
            "postgres": secrets.token_urlsafe(24),
            "redis": secrets.token_urlsafe(24),
            "cloudinary": secrets.token_urlsafe(24),
        }
        self.database_url = (f"postgresql+psycopg://album:{self.secrets['postgres']}@{ADDRESSES['data']}:{PG_PORT}/album")
        if sentinel:
            # kombu's form, one URL per Sentinel, each with the master's password and db: kombu
            # fails over from URL to URL and connects with the credentials of the one it is on.
            self.broker_url = ";".join(f"sentinel://:{self.secrets['redis']}@{ADDRESSES[h]}:{SENTINEL_PORT}/0"
                                       for h in SENTINEL_HOSTS)
        else:
            self.broker_url = f"redis://:{self.secrets['redis']}@{ADDRESSES['data']}:{REDIS_PORT}/0"
        emu = f"{ADDRESSES['cloudinary']}:{EMULATOR_PORT}"
        self.cloudinary_url = (f"cloudinary://{API_KEY}:{self.secrets['cloudinary']}@demo"
                               f"?upload_prefix=http://{emu}&cname={emu}&secure=false")
        self.emulator_url = f"http://{emu}"
        self.public_url = f"http://{ADDRESSES['lb']}:{WEB_PORT}"
        self.web_urls = [f"http://{ADDRESSES[h]}:{WEB_PORT}" for h in WEB_HOSTS]
        self._engine = None

    # -- environment ---------------------------------------------------------------------

    def deployment_env(self) -> dict[str, str]:
        """What a deployment sets on every web and worker host (the same on each)."""
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.tmp),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "APP_ENV": "production",
            "DATABASE_URL": self.database_url,
            "CELERY_BROKER_URL": self.broker_url,
            "CLOUDINARY_URL": self.cloudinary_url,
            "PUBLIC_URL": self.public_url,
            "JWT_SECRET": self.secrets["JWT_SECRET"],
            # Short so the trials see a lost worker's messages come back within seconds; in
            # production keep the default (120 s, above the longest task + countdown).
            "BROKER_VISIBILITY_TIMEOUT": str(self.visibility_timeout),
        }
        if self.sentinel:
            env["REDIS_MASTER_NAME"] = MASTER_NAME
        return env

    def _python(self, host: str, name: str, args: list[str], env: dict[str, str] | None = None,
                keep_stdout: bool = True) -> subprocess.Popen[bytes]:
        return self.net.spawn(host, name, [sys.executable, *args], env or self.deployment_env(), self.logs, cwd=ROOT,
                              keep_stdout=keep_stdout)

    # -- start ---------------------------------------------------------------------------

    def start(self) -> None:
        started = time.monotonic()
        self.net.create()
        self._start_postgres()
        self._start_redis()
        self._start_emulator()
        self._wait_data_tier()
        self._create_database()
        migrate = self._python("web-1", "migrate", ["-m", "flask", "--app", "web", "db", "upgrade"])
        if migrate.wait(timeout=120) != 0:
            raise RuntimeError(f"migrations failed: {self.log('web-1', 'migrate')[-2000:]}")
        for host in WEB_HOSTS:
            # As the Procfile runs it (gunicorn.conf.py: workers, threads, the redacting access log).
            self._python(host, "gunicorn", ["-m", "gunicorn", "--config", "gunicorn.conf.py",
                                            "--bind", f"{ADDRESSES[host]}:{WEB_PORT}", "web:create_app()"])
        self._python("lb", "balancer", ["-m", "tests.cluster.balancer", "--listen", f"{ADDRESSES['lb']}:{WEB_PORT}",
                                        *[arg for h in WEB_HOSTS for arg in ("--backend", f"{ADDRESSES[h]}:{WEB_PORT}")]])
        for host in WORKER_HOSTS:
            self.start_workers(host)
        beat_dir = self.tmp / "beat"
        beat_dir.mkdir(exist_ok=True)
        self._supervised("worker-1", "beat", ["-m", "celery", "--app", "worker.app:app", "beat", "--loglevel", "INFO",
                                              "--schedule", str(beat_dir / "schedule")])
        for url in self.web_urls + [self.public_url]:
            wait_for(lambda: self._healthy(url), 120, what=f"{url}/health")
        for host in WORKER_HOSTS:
            for kind in ("fast", "io"):
                wait_for(lambda: " ready." in self.log(host, kind), 120, what=f"the {kind} worker on {host}")
        self.start_seconds = time.monotonic() - started

    def start_workers(self, host: str) -> None:
        common = ["-m", "celery", "--app", "worker.app:app", "worker", "--loglevel", "INFO",
                  "--without-mingle", "--without-gossip"]
        self._supervised(host, "fast", [*common, "--queues", "fast", "--pool", "prefork", "--concurrency", "2",
                                        "--hostname", f"fast@{host}"])
        self._supervised(host, "io", [*common, "--queues", "io", "--pool", "threads", "--concurrency", "8",
                                      "--hostname", f"io@{host}"])

    def _supervised(self, host: str, name: str, args: list[str]) -> None:
        """What systemd's ``Restart=always`` does for a deployed worker: start it again when it
        exits. Each restart leaves a ``supervisor:`` line in the log (see :meth:`restarts`)."""
        loop = ('while :; do "$@"; echo "supervisor: exited with status $?, restarting in 1 s"; sleep 1; done')
        self.net.spawn(host, name, ["/bin/sh", "-c", loop, "supervise", sys.executable, *args],
                       self.deployment_env(), self.logs, cwd=ROOT)

    def _start_postgres(self) -> None:
        pgdata = self.tmp / "pg"
        pgdata.mkdir()
        pwfile = pgdata / "pw"
        pwfile.write_text(self.secrets["postgres"] + "\n")
        shutil.chown(pgdata, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
        pwfile.chmod(0o600)
        os.chmod(self.tmp, 0o755)  # postgres must reach its data directory
        data = pgdata / "data"
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                        f"--pwfile={pwfile}", "--auth-local=peer", "--auth-host=scram-sha-256", "--no-sync"],
                       check=True, capture_output=True)
        with open(data / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {netns.SUBNET} scram-sha-256\n")
        self.net.spawn("data", "postgres", [
            str(PG_BIN / "postgres"), "-D", str(data), "-c", f"listen_addresses={ADDRESSES['data']}",
            "-c", f"port={PG_PORT}", "-c", f"unix_socket_directories={pgdata}", "-c", "max_connections=300",
            # A worker host cut off mid-transaction holds its row locks until PostgreSQL gives up
            # on it; production wants this too (see README, "Scaling past one machine").
            "-c", "idle_in_transaction_session_timeout=10s",
            "-c", "tcp_keepalives_idle=5", "-c", "tcp_keepalives_interval=2", "-c", "tcp_keepalives_count=3",
            # Test speed only: this cluster's data is thrown away.
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
        ], {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, self.logs, user="postgres")

    def _redis_dir(self, host: str, name: str) -> Path:
        d = self.tmp / f"{host}-{name}"
        d.mkdir()
        return d

    def _start_redis(self) -> None:
        binary = shutil.which("redis-server") or "redis-server"
        env = {"PATH": "/usr/bin:/bin"}
        self.net.spawn("data", "redis", redis_server_cmd(binary, ADDRESSES["data"], REDIS_PORT,
                                                        self._redis_dir("data", "redis"), self.secrets["redis"]),
                       env, self.logs)
        if not self.sentinel:
            return
        self.net.spawn("redis-2", "redis", redis_server_cmd(
            binary, ADDRESSES["redis-2"], REDIS_PORT, self._redis_dir("redis-2", "redis"), self.secrets["redis"],
            replicaof=(ADDRESSES["data"], REDIS_PORT)), env, self.logs)
        for host in SENTINEL_HOSTS:
            self.net.spawn(host, "sentinel", sentinel_cmd(
                binary, self._redis_dir(host, "sentinel"), ADDRESSES[host], SENTINEL_PORT, MASTER_NAME,
                (ADDRESSES["data"], REDIS_PORT), self.secrets["redis"], quorum=2), env, self.logs)

    def _start_emulator(self) -> None:
        data_dir = self.tmp / "cloudinary"
        env = {**self.deployment_env(), "CLOUDINARY_URL": f"cloudinary://{API_KEY}:{self.secrets['cloudinary']}@demo"}
        self._python("cloudinary", "emulator", [
            "-m", "cloudinary_emulator", "--host", ADDRESSES["cloudinary"], "--port", str(EMULATOR_PORT),
            "--data-dir", str(data_dir), "--threads", "16",
            # Cloudinary retries a notification for minutes; a few tries over ~30 s here.
            "--notification-retries", "5", "--notification-retry-delay", "1", "--notification-timeout", "5",
        ], env, keep_stdout=False)  # its stdout is the CLOUDINARY_URL line (secret masked) and nothing else

    def _wait_data_tier(self) -> None:
        wait_for(lambda: _tcp_open(ADDRESSES["data"], PG_PORT), 120, what="PostgreSQL")
        wait_for(lambda: self._redis_ok(), 30, what="Redis")
        if self.sentinel:
            wait_for(lambda: self._replica_synced(), 30, what="the replica's first sync")
            wait_for(lambda: all(self._sentinel_sees_quorum(h) for h in SENTINEL_HOSTS), 30, what="the Sentinels")
        wait_for(lambda: self._healthy(self.emulator_url, "/_emulator/health"), 120, what="the emulator")

    def _create_database(self) -> None:
        with psycopg.connect(host=ADDRESSES["data"], port=PG_PORT, user="postgres", password=self.secrets["postgres"],
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f"CREATE ROLE album LOGIN PASSWORD '{self.secrets['postgres']}'")
            conn.execute("CREATE DATABASE album OWNER album")

    # -- probes --------------------------------------------------------------------------

    @staticmethod
    def _healthy(base: str, path: str = "/health") -> bool:
        try:
            return requests.get(base + path, timeout=1).ok
        except requests.RequestException:
            return False

    def redis_at(self, host: str, port: int = REDIS_PORT) -> redis.Redis:
        return redis.Redis(host=ADDRESSES.get(host, host), port=port, password=self.secrets["redis"],
                           socket_timeout=1, socket_connect_timeout=1)

    def _redis_ok(self) -> bool:
        try:
            return bool(self.redis_at("data").ping())
        except redis.RedisError:
            return False

    def _replica_synced(self) -> bool:
        try:
            info = self.redis_at("redis-2").info("replication")
        except redis.RedisError:
            return False
        return info.get("master_link_status") == "up"

    def sentinel_client(self, host: str) -> redis.Redis:
        return redis.Redis(host=ADDRESSES[host], port=SENTINEL_PORT, socket_timeout=1, socket_connect_timeout=1,
                           decode_responses=True)

    def _sentinel_sees_quorum(self, host: str) -> bool:
        try:
            master = self.sentinel_client(host).sentinel_master(MASTER_NAME)
        except redis.RedisError:
            return False
        return int(master.get("num-other-sentinels", 0)) >= 2 and int(master.get("num-slaves", 0)) >= 1

    def master_address(self) -> tuple[str, int] | None:
        """Where the Sentinels say the master is (the first Sentinel that answers)."""
        for host in SENTINEL_HOSTS:
            try:
                found = self.sentinel_client(host).sentinel_get_master_addr_by_name(MASTER_NAME)
            except redis.RedisError:
                continue
            if found:
                return found[0], int(found[1])
        return None

    # -- client side ---------------------------------------------------------------------

    @property
    def engine(self):  # type: ignore[no-untyped-def]
        if self._engine is None:
            from common.db import make_engine

            self._engine = make_engine(self.database_url)
        return self._engine

    def cloudinary_config(self) -> dict[str, Any]:
        emu = f"{ADDRESSES['cloudinary']}:{EMULATOR_PORT}"
        return {"cloud_name": "demo", "api_key": API_KEY, "api_secret": self.secrets["cloudinary"],
                "upload_prefix": f"http://{emu}", "cname": emu, "secure": False}

    def emulator(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = requests.request(method, self.emulator_url + path, timeout=10, **kwargs)
        response.raise_for_status()
        return response.json()

    # -- logs ----------------------------------------------------------------------------

    def log(self, host: str, name: str) -> str:
        path = self.logs / f"{host}-{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def task_runs(self) -> list[TaskRun]:
        """Every task received and finished, by host, from the workers' logs (JSON lines)."""
        runs = []
        for host in WORKER_HOSTS:
            for kind in ("fast", "io"):
                for line in self.log(host, kind).splitlines():
                    if not line.startswith("{"):
                        continue
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    match = _TASK_LINE.search(record.get("msg", ""))
                    if match:
                        runs.append(TaskRun(host, kind, match[1], match[2], match[3], float(record["ts"])))
        return runs

    def restarts(self) -> dict[str, int]:
        """Worker processes their supervisor had to start again, per host and kind."""
        found = {f"{host}/{kind}": self.log(host, kind).count("supervisor: exited")
                 for host in WORKER_HOSTS for kind in ("fast", "io")}
        return {name: n for name, n in found.items() if n}

    def healed(self) -> int:
        """Stages the beat's heal task found overdue and sent again (its log lines)."""
        total = 0
        for host in WORKER_HOSTS:
            for line in self.log(host, "fast").splitlines():
                if '"msg": "healed"' in line:
                    total += json.loads(line).get("resent", 0)
        return total

    def webhooks_per_web_host(self) -> Counter[str]:
        """Webhooks each web host acknowledged (200), from its access log."""
        return Counter({host: len(_WEBHOOK_200.findall(self.log(host, "gunicorn"))) for host in WEB_HOSTS})

    def web_statuses(self) -> Counter[str]:
        """HTTP statuses the web hosts answered (their access logs)."""
        found: Counter[str] = Counter()
        for host in WEB_HOSTS:
            for line in self.log(host, "gunicorn").splitlines():
                match = _STATUS.search(line)
                if match:
                    found[match[1]] += 1
        return found

    def leaked_secrets(self) -> list[str]:
        """Logs that contain one of the run's secrets (there must be none)."""
        found = []
        for path in sorted(self.logs.glob("*.log")) + sorted(self.tmp.glob("*/*.log")):
            text = path.read_text(errors="replace")
            found += [f"{path.name}: {name}" for name, value in self.secrets.items() if value in text]
        return found

    def stop(self) -> list[str]:
        if self._engine is not None:
            self._engine.dispose()
        return self.net.destroy()


def ready_counts(cluster: Cluster, album_id: str) -> Counter[str]:
    """Images of the album per status, straight from the database."""
    from sqlalchemy import func, select

    from common.models import Image, image_status

    with cluster.engine.connect() as conn:
        rows = conn.execute(
            select(Image.metadata_status, Image.thumbnails_status, func.count())
            .where(Image.album_id == album_id, Image.deleted_at.is_(None))
            .group_by(Image.metadata_status, Image.thumbnails_status)
        ).all()
    counts: Counter[str] = Counter()
    for metadata_status, thumbnails_status, n in rows:
        counts[image_status(metadata_status, thumbnails_status)] += n
    return counts


def public_ids(cluster: Cluster, album_id: str) -> list[str]:
    from sqlalchemy import select

    from common.models import Image

    with cluster.engine.connect() as conn:
        return list(conn.scalars(select(Image.public_id).where(Image.album_id == album_id)))


def per_host(runs: Iterable[TaskRun], event: str = "succeeded") -> Counter[str]:
    return Counter(run.host for run in runs if run.event == event)
