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

from typing import Any
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
