"""Redis-backed coordination between web and workers: debounced recounts, coalesced
reconciles, the shared Cloudinary Admin API budget, one heal run at a time, noticing that the
broker lost its data, and noticing that Cloudinary works again after an outage.

These are small hand-written pieces because Celery has no debounce, shared rate budget,
broker-loss or outage-end signal of its own; each uses one atomic Redis command or script, so any number of
processes on any number of hosts can share them. None of them is the only record of work to
do: that lives in the database (``common.pipeline``), so losing this state delays, never drops.
"""
from __future__ import annotations

import time
from functools import lru_cache

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from common.config import get_settings
from common.redis_conn import redis_client

#: A gate whose run is this late (its message lost with a killed worker or a Redis restart)
#: stops holding back new requests.
GATE_GRACE = 10.0


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    # Short timeouts and no retries: this sits on the request path, where a dead Redis must
    # become a 503 within about a second (redis-py would otherwise retry a timed-out command).
    return redis_client(
        url, socket_timeout=0.8, socket_connect_timeout=0.8, health_check_interval=30,
        retry=Retry(NoBackoff(), 0), retry_on_timeout=False,
    )


def client() -> redis.Redis:
    return _client(get_settings().broker_url)


class _UsesRedis:
    def __init__(self, r: redis.Redis | None = None) -> None:
        self._r = r

    @property
    def r(self) -> redis.Redis:
        return self._r if self._r is not None else client()


class Gate(_UsesRedis):
    """At most one scheduled run per key: ``claim()`` is true for the caller that must schedule
    it; the run calls ``release()`` *before* reading the database, so anything committed after
    that point claims the gate again and gets a run of its own (the last run is exact).

    The gate lapses ``GATE_GRACE`` after its run was due: a run whose message was lost (a worker
    killed holding it, Redis restarted) holds back new requests for seconds, not for the hour
    the broker takes to redeliver it. A late run that still comes is one harmless extra run."""

    def __init__(self, prefix: str, r: redis.Redis | None = None, grace: float = GATE_GRACE) -> None:
        super().__init__(r)
        self.prefix = prefix
        self.grace = grace

    def claim(self, key: str, delay: float) -> bool:
        return bool(self.r.set(f"{self.prefix}:{key}", "1", nx=True, px=self._ttl_ms(delay)))

    def hold(self, key: str, delay: float) -> None:
        """Keep the gate shut while a run already scheduled waits ``delay`` seconds."""
        self.r.set(f"{self.prefix}:{key}", "1", px=self._ttl_ms(delay))

    def release(self, key: str) -> None:
        self.r.delete(f"{self.prefix}:{key}")

    def _ttl_ms(self, delay: float) -> int:
        return max(1, int((max(0.0, delay) + self.grace) * 1000))


recount_gate = Gate("album:recount")
reconcile_gate = Gate("album:reconcile")


class AdminBudget(_UsesRedis):
    """What Cloudinary last said of the Admin API budget (``X-FeatureRateLimit-*``), shared by
    every worker and spent atomically, so that concurrent workers never spend calls the budget
    no longer has. While the budget is unknown (a new window, or Redis lost it) one caller at a
    time probes it; the others wait for that answer instead of all calling at once."""

    KEY = "cloudinary:admin_budget"  # hash: remaining, reset_at, limit
    PROBE_KEY = "cloudinary:admin_budget:probe"
    #: How long a probe may take before another caller may probe in its place.
    PROBE_TIMEOUT_MS = 15000

    # Take one call if more than the reserve remain; else answer when to ask again. The reserve
    # is ARGV[1], at most a tenth of the window's limit (a small plan's budget is not all reserve).
    _ACQUIRE = """
    local now = tonumber(ARGV[2])
    local reserve = tonumber(ARGV[1])
    local limit = redis.call('HGET', KEYS[1], 'limit')
    if limit then reserve = math.min(reserve, math.floor(tonumber(limit) / 10)) end
    local remaining = redis.call('HGET', KEYS[1], 'remaining')
    local reset_at = redis.call('HGET', KEYS[1], 'reset_at')
    if remaining and tonumber(reset_at) <= now then
        redis.call('DEL', KEYS[1])
        remaining = false
    end
    if not remaining then
        if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[3]) then
            return {1, '0'}
        end
        return {0, tostring(now + 1)}
    end
    if tonumber(remaining) > reserve then
        redis.call('HINCRBY', KEYS[1], 'remaining', -1)
        return {1, reset_at}
    end
    return {0, reset_at}
    """

    # Store an answer's budget. Answers arrive out of order: within one window the lowest
    # remaining wins (a late answer must not hand back calls already spent); an answer from an
    # older window is ignored; a newer window replaces the old one.
    _RECORD = """
    local remaining = tonumber(ARGV[1])
    local reset_at = tonumber(ARGV[2])
    local stored_reset = tonumber(redis.call('HGET', KEYS[1], 'reset_at') or '0')
    local stored_remaining = tonumber(redis.call('HGET', KEYS[1], 'remaining') or '-1')
    redis.call('DEL', KEYS[2])
    if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'limit', ARGV[3]) end
    if reset_at > stored_reset + 1 or stored_remaining < 0 then
        redis.call('HSET', KEYS[1], 'remaining', remaining, 'reset_at', ARGV[2])
    elseif reset_at >= stored_reset - 1 then
        redis.call('HSET', KEYS[1], 'remaining', math.min(remaining, stored_remaining))
    else
        return 0
    end
    redis.call('PEXPIREAT', KEYS[1], math.floor((math.max(reset_at, stored_reset) + 1) * 1000))
    return 1
    """

    def record(self, remaining: int | None, reset_at: float | None, limit: int | None = None) -> None:
        """Store what an Admin API answer said (its headers)."""
        if remaining is None or reset_at is None:
            return
        self.r.eval(self._RECORD, 2, self.KEY, self.PROBE_KEY, int(remaining), float(reset_at),
                    "" if limit is None else int(limit))

    def exhausted(self, reset_at: float | None, fallback_wait: float = 60.0) -> float:
        """Cloudinary answered 420/429: nothing left until ``reset_at``. Without it, the reset
        already known for this window stands; only when none is known, a ``fallback_wait``
        pause. Returns the seconds until the reset."""
        now = time.time()
        if reset_at is None or reset_at <= now:
            known = self.r.hget(self.KEY, "reset_at")
            reset_at = float(known) if known is not None and float(known) > now else now + fallback_wait
        self.record(0, reset_at)
        return max(0.5, reset_at - now)

    def acquire(self, reserve: int = 0) -> float:
        """Take one Admin call, leaving at least ``reserve`` calls unspent.

        Returns 0 when the caller may call now, else the seconds to wait."""
        allowed, reset_at = self.r.eval(self._ACQUIRE, 2, self.KEY, self.PROBE_KEY, reserve, time.time(),
                                        self.PROBE_TIMEOUT_MS)
        if int(allowed):
            return 0.0
        return max(0.5, float(reset_at) - time.time())

    def release_probe(self) -> None:
        """A probe that got no budget answer (an error) lets the next caller probe at once."""
        self.r.delete(self.PROBE_KEY)


admin_budget = AdminBudget()


class Lease(_UsesRedis):
    """A lock that expires: one heal run at a time across hosts (a second is harmless, only wasteful)."""

    def __init__(self, key: str, r: redis.Redis | None = None) -> None:
        super().__init__(r)
        self.key = key

    def acquire(self, seconds: float) -> bool:
        return bool(self.r.set(self.key, "1", nx=True, px=max(1, int(seconds * 1000))))

    def release(self) -> None:
        self.r.delete(self.key)


heal_lease = Lease("album:heal")


class BrokerEpoch(_UsesRedis):
    """Notices that Redis is not the one it was: restarted (empty, or from a snapshot that misses
    the last writes) or failed over to a replica. Each Redis process has its own ``run_id``;
    the one last seen is kept in Redis itself, so a restart either loses the key or keeps an old
    id, and both read as "changed". Queued messages may then be gone: the heal task re-drives
    everything pending and reconciles the active albums."""

    KEY = "album:broker_run_id"

    def changed(self) -> bool:
        try:
            run_id = str(self.r.info("server").get("run_id", ""))
        except redis.ResponseError:  # INFO renamed away (some managed Redis): the key alone tells
            run_id = "unknown"
        previous = self.r.set(self.KEY, run_id, get=True)
        return previous is None or previous.decode() != run_id


broker_epoch = BrokerEpoch()


class CloudinaryOutage(_UsesRedis):
    """Notices that Cloudinary, after failing every call for a while, works again: heal then
    sends at once every stage waiting out its backoff, rather than each waiting up to
    ``RETRY_BACKOFF_MAX`` after the outage ended (the pause grows with the outage).

    Every Upload API call reports its outcome. A transient failure marks the start of a failing
    spell, unless one is marked; a success ends it, and a spell of ``OUTAGE_AFTER`` seconds or
    more is an outage whose end is kept for heal to take. Sporadic errors (a success between
    them) never make a spell that long. Best effort: with Redis away, the backoff still retries."""

    FAILING_SINCE = "album:cloudinary:failing_since"
    RECOVERED = "album:cloudinary:recovered"
    OUTAGE_AFTER = 10.0

    def failed(self) -> None:
        try:
            self.r.set(self.FAILING_SINCE, time.time(), nx=True)
        except redis.RedisError:
            pass

    def succeeded(self) -> None:
        try:
            since = self.r.getdel(self.FAILING_SINCE)
            if since is not None and time.time() - float(since) >= self.OUTAGE_AFTER:
                self.r.set(self.RECOVERED, time.time())
        except redis.RedisError:
            pass

    def failing_for(self) -> float:
        """How long every call has been failing (0: it is not)."""
        since = self.r.get(self.FAILING_SINCE)
        return max(0.0, time.time() - float(since)) if since is not None else 0.0

    def take_recovery(self) -> bool:
        """True once after an outage ended."""
        return self.r.getdel(self.RECOVERED) is not None


cloudinary_outage = CloudinaryOutage()
