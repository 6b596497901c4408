"""Redis-backed coordination between web and workers: debounced recounts, coalesced
reconciles and the shared view of the Cloudinary Admin API budget.

These are small hand-written pieces because Celery has no debounce or shared rate budget of
its own; each uses one atomic Redis command, so any number of processes can share it.
"""
from __future__ import annotations

import time
from functools import lru_cache

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from common.config import get_settings


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    # Short timeouts and no retries: this sits on the request path, where a dead Redis must
    # become a 503 within about a second (redis-py would otherwise retry a timed-out command).
    return redis.Redis.from_url(
        url, socket_timeout=0.8, socket_connect_timeout=0.8, health_check_interval=30,
        retry=Retry(NoBackoff(), 0), retry_on_timeout=False,
    )


def client() -> redis.Redis:
    return _client(get_settings().broker_url)


class Gate:
    """At most one scheduled run per key: ``claim()`` is true for the caller that must schedule
    it; the run calls ``release()`` *before* reading the database, so anything committed after
    that point claims the gate again and gets a run of its own (the last run is exact)."""

    def __init__(self, prefix: str, r: redis.Redis | None = None) -> None:
        self.prefix = prefix
        self._r = r

    @property
    def r(self) -> redis.Redis:
        return self._r if self._r is not None else client()

    def claim(self, key: str, ttl: float) -> bool:
        # The TTL only frees a gate whose run was lost (e.g. Redis restarted empty under it).
        return bool(self.r.set(f"{self.prefix}:{key}", "1", nx=True, px=max(1, int(ttl * 1000))))

    def release(self, key: str) -> None:
        self.r.delete(f"{self.prefix}:{key}")


recount_gate = Gate("album:recount")
reconcile_gate = Gate("album:reconcile")


class AdminBudget:
    """What Cloudinary last said of the Admin API budget (``X-FeatureRateLimit-*``), shared by
    every worker, and spent atomically so that concurrent workers never spend calls the budget
    no longer has."""

    KEY = "cloudinary:admin_budget"  # hash: remaining, reset_at

    # Atomically take one call if more than ARGV[1] remain; else answer the reset time.
    _ACQUIRE = """
    local remaining = redis.call('HGET', KEYS[1], 'remaining')
    if not remaining then return {1, '0'} end
    local reset_at = redis.call('HGET', KEYS[1], 'reset_at')
    if tonumber(reset_at) <= tonumber(ARGV[2]) then
        redis.call('DEL', KEYS[1])
        return {1, '0'}
    end
    if tonumber(remaining) > tonumber(ARGV[1]) then
        redis.call('HINCRBY', KEYS[1], 'remaining', -1)
        return {1, reset_at}
    end
    return {0, reset_at}
    """

    def __init__(self, r: redis.Redis | None = None) -> None:
        self._r = r

    @property
    def r(self) -> redis.Redis:
        return self._r if self._r is not None else client()

    def record(self, remaining: int | None, reset_at: float | None) -> None:
        """Store what an Admin API answer said (its headers)."""
        if remaining is None or reset_at is None:
            return
        ttl = max(1, int(reset_at - time.time()) + 1)
        pipe = self.r.pipeline()
        pipe.hset(self.KEY, mapping={"remaining": remaining, "reset_at": reset_at})
        pipe.expire(self.KEY, ttl)
        pipe.execute()

    def exhausted(self, reset_at: float | None, fallback_wait: float = 60.0) -> None:
        """Cloudinary answered 420/429: nothing left until ``reset_at`` (or a fallback wait)."""
        now = time.time()
        self.record(0, reset_at if reset_at and reset_at > now else now + fallback_wait)

    def seconds_until_reset(self) -> float:
        raw = self.r.hget(self.KEY, "reset_at")
        return max(0.0, float(raw) - time.time()) if raw is not None else 0.0

    def acquire(self, reserve: int = 0) -> float:
        """Take one Admin call, leaving at least ``reserve`` calls unspent.

        Returns 0 when the caller may call now, else the seconds until the budget resets.
        An unknown budget (no answer seen yet this window) lets the call through."""
        allowed, reset_at = self.r.eval(self._ACQUIRE, 1, self.KEY, reserve, time.time())
        if int(allowed):
            return 0.0
        return max(0.5, float(reset_at) - time.time())


admin_budget = AdminBudget()


class ActiveAlbums:
    """Albums whose upload form went out recently: the beat reconciles them now and then, so a
    photo whose webhook was lost arrives even if its client never calls upload_done again."""

    KEY = "album:forms_out"

    def __init__(self, r: redis.Redis | None = None) -> None:
        self._r = r

    @property
    def r(self) -> redis.Redis:
        return self._r if self._r is not None else client()

    def touch(self, album_id: str) -> None:
        self.r.zadd(self.KEY, {album_id: time.time()})

    def since(self, seconds: float) -> list[str]:
        cutoff = time.time() - seconds
        self.r.zremrangebyscore(self.KEY, "-inf", cutoff)
        return [member.decode() for member in self.r.zrangebyscore(self.KEY, cutoff, "+inf")]


active_albums = ActiveAlbums()
