"""One place that turns the broker URL into a redis-py client, for the Redis connections the
product makes beside kombu's (coordination gates and budget, the webhook's fast publish).

Two URL forms, the same ones kombu's Redis transport reads for ``CELERY_BROKER_URL``:

- ``redis://[:PASSWORD@]HOST:PORT/DB`` (and ``rediss://``, ``unix://``): one Redis;
- ``sentinel://[:PASSWORD@]HOST:PORT/DB;sentinel://[:PASSWORD@]HOST2:PORT2/DB;...``: Redis
  Sentinel, one URL per Sentinel, with the master's name in ``REDIS_MASTER_NAME`` (kombu gets it
  as ``broker_transport_options["master_name"]``). The password and DB are the master's. Every
  URL must carry the same ones: kombu moves from URL to URL when a connection fails and then
  uses the credentials of the URL it is on (a URL without the password meets ``NOAUTH`` on the
  master), so :func:`parse_sentinel_url` refuses URLs that differ.

A Sentinel client is redis-py's ``Sentinel(...).master_for(name)``: every new connection asks
the Sentinels where the master is, and a connection to a master that died or was demoted
fails and is replaced, so after a failover the next command reaches the promoted replica.
"""
from __future__ import annotations

import hashlib
import os
import threading
from functools import lru_cache
from typing import Any, Callable
from urllib.parse import SplitResult, unquote, urlsplit

import redis
from redis.sentinel import Sentinel

SENTINEL_SCHEME = "sentinel://"
SENTINEL_DEFAULT_PORT = 26379


def is_sentinel_url(url: str) -> bool:
    return url.startswith(SENTINEL_SCHEME)


def is_redis_url(url: str) -> bool:
    """A URL :func:`redis_client` can serve (kombu's Redis or Sentinel transport)."""
    return url.startswith(("redis://", "rediss://", "unix://", SENTINEL_SCHEME))


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """``sentinel://...;sentinel://...`` -> the Sentinels' addresses and the master's
    connection kwargs (``db``, ``password``, ``username``), the same in every URL."""
    parts = [part for part in url.split(";") if part]
    if not parts or not all(is_sentinel_url(part) for part in parts):
        raise ValueError(f"not a sentinel:// URL list: {url.split('@')[-1]!r}")
    sentinels = []
    for part in parts:
        split = urlsplit(part)
        if not split.hostname:
            raise ValueError("a sentinel:// URL needs a host")
        sentinels.append((split.hostname, split.port or SENTINEL_DEFAULT_PORT))
    masters = [_master_kwargs(urlsplit(part)) for part in parts]
    if any(m != masters[0] for m in masters):
        raise ValueError("every sentinel:// URL must carry the same password and db (kombu uses each URL's own)")
    return sentinels, masters[0]


def _master_kwargs(split: SplitResult) -> dict[str, Any]:
    master: dict[str, Any] = {"db": int(split.path.strip("/") or 0)}
    if split.password:
        master["password"] = unquote(split.password)
    if split.username:
        master["username"] = unquote(split.username)
    return master


def redis_client(url: str, master_name: str | None = None, **kwargs: Any) -> redis.Redis:
    """A client for ``url``; ``kwargs`` (timeouts, retry...) apply to the data connections and
    their ``socket_*`` ones to the Sentinel connections too. ``master_name`` defaults to the
    settings' ``REDIS_MASTER_NAME``."""
    if not is_sentinel_url(url):
        return redis.Redis.from_url(url, **kwargs)
    if master_name is None:
        from common.config import get_settings

        master_name = get_settings().redis_master_name
    if not master_name:
        raise ValueError("a sentinel:// URL needs REDIS_MASTER_NAME (the name the Sentinels monitor)")
    sentinels, master = parse_sentinel_url(url)
    socket_kwargs = {k: v for k, v in kwargs.items() if k.startswith("socket_")}
    return Sentinel(sentinels, sentinel_kwargs=socket_kwargs).master_for(master_name, **master, **kwargs)


class ThreadConnections:
    """One Redis connection per thread, configured like ``client()``'s pool (same address,
    timeouts, no retries) and driven through redis-py's connection API: for the hot paths, the
    album read's view count (``common.views``) and the webhook's publish (``common.fast_publish``).

    Why not ``client()`` itself: its per-command path (pool checkout and return, the retry
    wrapper, observability hooks) made a counted read cost ~256 µs more CPU than an uncounted
    one, against ~110 µs this way: 0.84x against 0.93x the throughput when CPU-bound, for a
    0.9x target (bench/views.py, figures in bench/README.md)."""

    def __init__(self, client: Callable[[], redis.Redis]) -> None:
        self._client = client
        self._local = threading.local()

    def _connection(self) -> Any:
        held = getattr(self._local, "held", None)
        if held is None or held[0] != os.getpid():  # a forked child makes its own
            pool = self._client().connection_pool
            held = self._local.held = (os.getpid(), pool.connection_class(**pool.connection_kwargs))
        return held[1]

    def _call(self, *args: Any) -> Any:
        return self.pipeline(args)[0]

    def pipeline(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Send ``commands`` in one write and read their answers (no MULTI: not atomic)."""
        conn = self._connection()
        was_connected = conn.is_connected
        try:
            return self._exchange(conn, commands)
        except redis.exceptions.NoScriptError:
            raise  # a whole answer: the connection is fine
        except redis.ConnectionError:
            conn.disconnect()
            if not was_connected:
                raise
        except BaseException:
            conn.disconnect()
            raise
        # The socket was closed while idle (Redis restarted): once more, on a new connection. A
        # view cannot count twice: the script run again finds the view inside its window; a
        # task published twice runs twice, and every task is idempotent.
        try:
            return self._exchange(conn, commands)
        except BaseException:
            conn.disconnect()
            raise

    @staticmethod
    def _exchange(conn: Any, commands: tuple[tuple[Any, ...], ...]) -> list[Any]:
        if not conn.is_connected:
            # Explicitly: redis-py 8.1's send path connects through ``connect_check_health``,
            # which skips a Sentinel connection's ``connect`` (ask the Sentinels for the master)
            # and dials the default localhost:6379 instead. The pool always calls ``connect``.
            conn.connect()
        if len(commands) == 1:
            conn.send_command(*commands[0])
        else:
            conn.send_packed_command(conn.pack_commands(commands))
        return [conn.read_response() for _ in commands]

    def run_script(self, source: str, keys: list[str], args: list[Any]) -> Any:
        sha = _sha1(source)
        try:
            return self._call("EVALSHA", sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:  # Redis restarted (or flushed its scripts)
            self._call("SCRIPT", "LOAD", source)
            return self._call("EVALSHA", sha, len(keys), *keys, *args)


@lru_cache(maxsize=16)
def _sha1(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()
