"""Command lines and config for a Redis master, its replicas and Sentinels (the system
``redis-server`` binary; ``--sentinel`` makes it a Sentinel). Used by the Sentinel client tests
(tests/common/test_redis_conn.py, on loopback) and by the cluster rig (tests/cluster/, one per host)."""
from __future__ import annotations

from pathlib import Path


def redis_server_cmd(binary: str, bind: str, port: int, directory: Path, password: str,
                     replicaof: tuple[str, int] | None = None) -> list[str]:
    """A Redis without persistence (a restart comes back empty; reconciliation covers it). The
    password goes in a config file, not on the command line where ``ps`` would show it."""
    conf = directory / "redis.conf"
    lines = [f"bind {bind}", f"port {port}", 'save ""', "appendonly no", f"dir {directory}",
             f"logfile {directory / 'redis.log'}", f"requirepass {password}", f"masterauth {password}"]
    if replicaof is not None:
        lines.append(f"replicaof {replicaof[0]} {replicaof[1]}")
    conf.write_text("\n".join(lines) + "\n")
    conf.chmod(0o600)
    return [binary, str(conf)]


def sentinel_cmd(binary: str, directory: Path, bind: str, port: int, master_name: str,
                 master: tuple[str, int], password: str, quorum: int, down_after_ms: int = 1000,
                 failover_timeout_ms: int = 10000) -> list[str]:
    """A Sentinel watching ``master``; it rewrites its config file, so each gets its own."""
    conf = directory / "sentinel.conf"
    conf.write_text("\n".join([
        f"bind {bind}",
        f"port {port}",
        "protected-mode no",
        f"dir {directory}",
        f"logfile {directory / 'sentinel.log'}",
        f"sentinel monitor {master_name} {master[0]} {master[1]} {quorum}",
        f"sentinel auth-pass {master_name} {password}",
        # How long a silent master takes to be declared down: the floor of the failover time.
        f"sentinel down-after-milliseconds {master_name} {down_after_ms}",
        f"sentinel failover-timeout {master_name} {failover_timeout_ms}",
        f"sentinel parallel-syncs {master_name} 1",
        "",
    ]))
    conf.chmod(0o600)
    return [binary, str(conf), "--sentinel"]
