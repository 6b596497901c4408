"""Sentinel-aware Redis clients (common/redis_conn.py) against a real master, replica and
Sentinel on loopback: the coordination keys and the webhook's fast publish reach the master,
and follow it when the master is SIGKILLed and the Sentinel promotes the replica."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from common.config import ConfigError, get_settings, load_settings
from common.coordination import Gate
from common.redis_conn import parse_sentinel_url, redis_client

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import services  # noqa: E402
from tests.redis_sentinel import redis_server_cmd, sentinel_cmd  # noqa: E402

PASSWORD = "sentinel-test-password"
MASTER = "unit"


@dataclass
class SentinelSet:
    master_port: int
    replica_port: int
    sentinel_port: int
    master: subprocess.Popen[bytes]
    processes: list[subprocess.Popen[bytes]]

    @property
    def url(self) -> str:
        return f"sentinel://:{PASSWORD}@127.0.0.1:{self.sentinel_port}/0"

    def direct(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=PASSWORD, socket_timeout=1)

    def sentinel(self) -> redis.Redis:
        return redis.Redis(port=self.sentinel_port, socket_timeout=1, decode_responses=True)

    def master_port_now(self) -> int:
        return int(self.sentinel().sentinel_get_master_addr_by_name(MASTER)[1])


def _until(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except redis.RedisError:
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def sentinel_set(tmp_path: Path) -> Iterator[SentinelSet]:
    binary = services.redis_binary()
    ports = [services.free_port() for _ in range(3)]
    dirs = []
    for name in ("master", "replica", "sentinel"):
        (tmp_path / name).mkdir()
        dirs.append((tmp_path / name).resolve())
    master = subprocess.Popen(redis_server_cmd(binary, "127.0.0.1", ports[0], dirs[0], PASSWORD))
    replica = subprocess.Popen(redis_server_cmd(binary, "127.0.0.1", ports[1], dirs[1], PASSWORD,
                                                replicaof=("127.0.0.1", ports[0])))
    procs = [master, replica]
    try:
        s = SentinelSet(ports[0], ports[1], ports[2], master, procs)
        _until(lambda: s.direct(ports[1]).info("replication")["master_link_status"] == "up", 10, "the replica")
        procs.append(subprocess.Popen(sentinel_cmd(binary, dirs[2], "127.0.0.1", ports[2], MASTER,
                                                   ("127.0.0.1", ports[0]), PASSWORD, quorum=1)))
        _until(lambda: int(s.sentinel().sentinel_master(MASTER)["num-slaves"]) == 1, 10, "the Sentinel")
        yield s
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)


def test_sentinel_urls_in_kombus_form() -> None:
    sentinels, master = parse_sentinel_url("sentinel://:p%40ss@h1:26380/2;sentinel://:p%40ss@h2/2")
    assert sentinels == [("h1", 26380), ("h2", 26379)]
    assert master == {"db": 2, "password": "p@ss"}
    # kombu connects with the credentials of whichever URL it failed over to: all must match.
    with pytest.raises(ValueError, match="same password and db"):
        parse_sentinel_url("sentinel://:secret@h1:26379/0;sentinel://h2:26379/0")
    with pytest.raises(ValueError):
        parse_sentinel_url("redis://h1:6379/0")


def test_settings_refuse_a_sentinel_broker_without_its_master_name() -> None:
    with pytest.raises(ConfigError, match="REDIS_MASTER_NAME"):
        load_settings({"CELERY_BROKER_URL": "sentinel://h1:26379/0"})
    with pytest.raises(ConfigError, match="same password") as refused:
        load_settings({"CELERY_BROKER_URL": "sentinel://:hunter2@h1/0;sentinel://h2/0", "REDIS_MASTER_NAME": "m"})
    assert "hunter2" not in str(refused.value)
    settings = load_settings({"CELERY_BROKER_URL": "sentinel://h1/0;sentinel://h2/0", "REDIS_MASTER_NAME": "m"})
    assert settings.redis_master_name == "m"


def test_kombu_gets_the_master_name_in_its_transport_options(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import reload

    import celeryconfig

    assert "master_name" not in celeryconfig.broker_transport_options  # redis:// here: kombu needs none
    monkeypatch.setenv("CELERY_BROKER_URL", "sentinel://:pw@h1:26379/0;sentinel://:pw@h2:26379/0")
    monkeypatch.setenv("REDIS_MASTER_NAME", "album")
    get_settings.cache_clear()
    try:
        assert reload(celeryconfig).broker_transport_options["master_name"] == "album"
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
        reload(celeryconfig)


def test_a_redis_url_gets_a_plain_client(redis_url: str) -> None:
    client = redis_client(redis_url)
    assert type(client.connection_pool) is redis.ConnectionPool
    assert client.ping()


def test_coordination_follows_the_master_through_a_failover(sentinel_set: SentinelSet) -> None:
    # As coordination.py builds it: short timeouts, no retries (a request must fail fast).
    client = redis_client(sentinel_set.url, master_name=MASTER, socket_timeout=0.8, socket_connect_timeout=0.8,
                          retry=Retry(NoBackoff(), 0), retry_on_timeout=False)
    gate = Gate("album:recount", client)
    assert gate.claim("A1", delay=60)
    assert sentinel_set.direct(sentinel_set.master_port).exists("album:recount:A1")

    sentinel_set.master.send_signal(signal.SIGKILL)  # no shutdown: the master just dies
    killed = time.monotonic()
    # Calls fail (quickly) until the Sentinel has promoted the replica, then reach it.
    _until(lambda: gate.claim("A2", delay=60), 30, "a gate claimed on the promoted master")
    followed = time.monotonic() - killed
    assert sentinel_set.master_port_now() == sentinel_set.replica_port
    promoted = sentinel_set.direct(sentinel_set.replica_port)
    assert promoted.exists("album:recount:A2")
    assert promoted.exists("album:recount:A1")  # replicated before the kill: the gate held
    print(f"coordination client followed the failover {followed:.1f} s after the master was killed")
    assert followed < 15


def test_the_fast_publish_reaches_the_sentinels_master(sentinel_set: SentinelSet, monkeypatch: pytest.MonkeyPatch) -> None:
    from common.fast_publish import RedisTaskPublisher, publisher_for
    from common.celery_app import app

    monkeypatch.setenv("REDIS_MASTER_NAME", MASTER)
    get_settings.cache_clear()
    try:
        publisher = publisher_for(app, sentinel_set.url)
        assert isinstance(publisher, RedisTaskPublisher)
        publisher.publish("album.ingest", ("A", {"public_id": "p"}, None), "sentinel-q", "x")
    finally:
        monkeypatch.delenv("REDIS_MASTER_NAME")
        get_settings.cache_clear()
        publisher_for.cache_clear()
    raw = sentinel_set.direct(sentinel_set.master_port).rpop("sentinel-q")
    assert json.loads(raw)["headers"]["task"] == "album.ingest"
    assert app.conf.broker_url  # the app itself was not reconfigured by this test
