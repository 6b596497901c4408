"""Album views: recorded on the read path in one Redis round trip, folded into
``albums.views_count`` by a beat task (``tasks/views.py``), exactly once.

A view is a ``GET`` of the album by a user whose token has ``read`` and not ``image_upload`` on
it (an uploader's read hands out a fresh upload form: the upload page refreshing its form is
not an audience), counted at most once per user per album per ``VIEW_WINDOW`` seconds.

Redis keys (under ``album:views:``):

- ``seen:<album>:<user digest>``: when the user's last counted view was (ms); it expires with
  the window. The window is decided on the app's clock, not by the key's TTL (which only
  collects the garbage), so a test can travel in time through it.
- ``pending``: hash album -> views not yet in the database.
- ``fold:<id>``: hash album -> views one fold run took from ``pending`` (a ``RENAME``: atomic,
  so two runs never take the same view).
- ``folds``: sorted set fold id -> when a run last claimed it (its lease).

Exactly once, even when a worker is SIGKILLed at any point: a fold's increments and a
``view_folds`` row with its id commit in one transaction, and only then is the fold dropped
from Redis. A fold still in Redis whose lease ran out (its run died, or its database write
failed) is claimed by a later run, which applies it unless its ``view_folds`` row says it
already was (the primary key also stops two runs applying one fold at once). Until a fold is
dropped, its counts stay in the album's answer (``pending`` + folds in flight). The answer
reads the database, then Redis: a read whose two look-ups straddle a fold's commit and drop
(about a millisecond, once per fold interval) is short by that fold for that one read, and a
read between the commit and the drop counts it twice; the next read is exact. (Closing that
would take one snapshot across both stores.)

Redis restarted empty loses the pending views (at most one fold interval's worth) and the
windows (a returning user counts again): counting is best effort where the answer is not.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from typing import Any, Callable, ContextManager, Mapping, TypeVar

import redis
from sqlalchemy import delete, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common.coordination import client
from common.logs import log
from common.redis_conn import ThreadConnections
from common.models import ViewFold, utcnow

logger = logging.getLogger(__name__)

PREFIX = "album:views:"
PENDING_KEY = PREFIX + "pending"
FOLDS_KEY = PREFIX + "folds"
FOLD_PREFIX = PREFIX + "fold:"
#: A fold claimed longer ago than this is taken over by the next run (its run is presumed dead).
#: Above the fold task's time limit, so a slow but live run is not raced for nothing.
FOLD_LEASE = 60.0
#: ``view_folds`` rows older than this are deleted: by then their fold has long left Redis.
FOLD_MARKER_RETENTION = timedelta(days=1)

T = TypeVar("T")


def seen_key(album_id: str, user_id: str) -> str:
    # A digest keeps keys short whatever a token's user id holds.
    digest = hashlib.blake2b(user_id.encode(), digest_size=10).hexdigest()
    return f"{PREFIX}seen:{album_id}:{digest}"


def viewer(claims: Mapping[str, Any], abilities: set[str] | frozenset[str] | tuple[str, ...] | list[str]) -> str | None:
    """The user a read of the album counts a view for, or ``None`` when the read is no view:
    no ``read`` right, an uploader (``image_upload``), or a session naming no user."""
    if "read" not in abilities or "image_upload" in abilities:
        return None
    user = claims.get("user_id")
    if user is None or user == "":
        return None
    return str(user)


# -- the read path -------------------------------------------------------------------------------

# KEYS: pending, folds[, seen]. ARGV: album, now (ms), window (ms), fold key prefix.
# With a seen key, counts a view unless the user's last counted view is within the window;
# always answers the album's views not yet in the database (pending + folds in flight).
# Fold keys are named here, not in KEYS: fine on one Redis, which is what this product runs on.
_READ = """
local counted = 0
if #KEYS == 3 then
  local last = redis.call('GET', KEYS[3])
  if (not last) or (tonumber(ARGV[2]) - tonumber(last) >= tonumber(ARGV[3])) then
    redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])
    redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
    counted = 1
  end
end
local pending = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
for _, fold in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  pending = pending + tonumber(redis.call('HGET', ARGV[4] .. fold, ARGV[1]) or '0')
end
return {counted, pending}
"""


@dataclass(frozen=True)
class AlbumRead:
    counted: bool  # this read was a new view
    pending: int  # views of the album not yet in the database, this one included


_scripts: dict[str, Any] = {}


def _run(r: redis.Redis | ThreadConnections, source: str, keys: list[str], args: list[Any]) -> Any:
    """Run a script by EVALSHA, loading it again if Redis lost it (e.g. restarted)."""
    if isinstance(r, ThreadConnections):
        return r.run_script(source, keys, args)
    script = _scripts.get(source)
    if script is None:
        script = _scripts[source] = r.register_script(source)
    return script(keys=keys, args=args, client=r)


def read_album(r: redis.Redis | ThreadConnections, album_id: str, user_id: str | None, window: float,
               now: float | None = None) -> AlbumRead:
    """One round trip: count ``user_id``'s view (``None``: count nothing) and answer the
    album's pending views."""
    now_ms = int((time.time() if now is None else now) * 1000)
    keys = [PENDING_KEY, FOLDS_KEY] + ([seen_key(album_id, user_id)] if user_id is not None else [])
    counted, pending = _run(r, _READ, keys, [album_id, now_ms, int(window * 1000), FOLD_PREFIX])
    return AlbumRead(bool(counted), int(pending))


class Breaker:
    """Skip Redis for ``cooldown`` seconds after it failed, so a dead (or black-holed) Redis costs
    a read one client timeout per cooldown per process, not one per read. After the cooldown one
    call probes; the others keep skipping until it answers. (Hand-written: a dozen lines, where a
    circuit-breaker library would bring its own state, threads and retries to a hot path.)"""

    def __init__(self, cooldown: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._open_until = 0.0  # 0: closed (Redis answering)
        self._probing = False

    @property
    def closed(self) -> bool:
        return not self._open_until

    def call(self, fn: Callable[[], T], fallback: T) -> T:
        """``fn()``, or ``fallback`` when Redis is known down or fails now."""
        probe = False
        if self._open_until:  # the closed path takes no lock
            with self._lock:
                if self._open_until and (self._probing or self._clock() < self._open_until):
                    return fallback
                probe = bool(self._open_until)
                self._probing = probe
        try:
            result = fn()
        except redis.RedisError as exc:
            with self._lock:
                tripped = not self._open_until
                self._open_until = self._clock() + self.cooldown
                self._probing = False
            if tripped:
                log(logger, logging.WARNING, "redis unavailable on the album read: views not counted",
                    error=type(exc).__name__, retry_in_s=self.cooldown)
            return fallback
        except BaseException:
            if probe:  # not Redis' fault: let the next call probe
                with self._lock:
                    self._probing = False
            raise
        if probe:
            with self._lock:
                self._open_until = 0.0
                self._probing = False
            log(logger, logging.INFO, "redis answers the album read again")
        return result


#: The web process' breaker for its best-effort Redis calls on album reads, and its connections.
breaker = Breaker()
read_connections = ThreadConnections(client)


# -- folding into the database -------------------------------------------------------------------

# KEYS: pending, fold:<id>, folds. ARGV: now, id. Take everything pending as one fold.
_TAKE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[2])
return 1
"""

# KEYS: folds. ARGV: lease cutoff, now. Claim the folds whose lease ran out (renewing it).
_CLAIM_STALE = """
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for _, id in ipairs(stale) do redis.call('ZADD', KEYS[1], ARGV[2], id) end
return stale
"""


def take_pending(r: redis.Redis, now: float | None = None) -> str | None:
    """Move every pending view into a new fold; its id, or ``None`` when nothing was pending."""
    fold_id = uuid.uuid4().hex
    now = time.time() if now is None else now
    taken = _run(r, _TAKE, [PENDING_KEY, FOLD_PREFIX + fold_id, FOLDS_KEY], [now, fold_id])
    return fold_id if taken else None


def claim_stale_folds(r: redis.Redis, now: float | None = None, lease: float = FOLD_LEASE) -> list[str]:
    """The folds no live run holds (their run died or gave up), now held by the caller."""
    now = time.time() if now is None else now
    return [raw.decode() for raw in _run(r, _CLAIM_STALE, [FOLDS_KEY], [now - lease, now])]


def fold_counts(r: redis.Redis, fold_id: str) -> dict[str, int]:
    return {album.decode(): int(n) for album, n in r.hgetall(FOLD_PREFIX + fold_id).items()}


def apply_fold(session: Session, fold_id: str, counts: Mapping[str, int]) -> bool:
    """Add a fold's counts to the albums, once: ``False`` when it was applied already. A
    concurrent run applying the same fold fails on the ``view_folds`` key (``IntegrityError``)
    before any increment."""
    if session.scalar(select(ViewFold.id).where(ViewFold.id == fold_id)) is not None:
        return False
    now = utcnow()
    session.add(ViewFold(id=fold_id, folded_at=now))
    session.flush()
    # Atomic increments (never read-modify-write), in album order so that two concurrent folds
    # lock rows in the same order and cannot deadlock.
    rows = [{"n": n, "album_id": album_id} for album_id, n in sorted(counts.items()) if n > 0]
    if rows:
        session.execute(text("UPDATE albums SET views_count = views_count + :n WHERE id = :album_id"), rows)
    session.execute(delete(ViewFold).where(ViewFold.folded_at < now - FOLD_MARKER_RETENTION))
    return True


def finish_fold(r: redis.Redis, fold_id: str) -> None:
    """The fold is in the database: drop it from Redis (one MULTI/EXEC)."""
    pipe = r.pipeline(transaction=True)
    pipe.delete(FOLD_PREFIX + fold_id)
    pipe.zrem(FOLDS_KEY, fold_id)
    pipe.execute()


def release_fold(r: redis.Redis, fold_id: str) -> None:
    """The fold could not be applied: let the next run claim it at once (lease expired)."""
    r.zadd(FOLDS_KEY, {fold_id: 0}, xx=True)


@dataclass
class FoldReport:
    folds: int = 0  # folds applied by this run
    views: int = 0  # views they added
    albums: set[str] = field(default_factory=set)
    already_applied: int = 0  # stale folds whose database write had happened (dropped from Redis)


def _fold_one(r: redis.Redis, session_scope: Callable[[], ContextManager[Session]], fold_id: str, report: FoldReport) -> None:
    counts = fold_counts(r, fold_id)
    if counts:
        try:
            with session_scope() as session:
                applied = apply_fold(session, fold_id, counts)
        except IntegrityError:
            applied = False  # a concurrent run holding the same fold committed it first
        except Exception:
            release_fold(r, fold_id)
            raise
        if applied:
            report.folds += 1
            report.views += sum(counts.values())
            report.albums.update(counts)
        else:
            report.already_applied += 1
    finish_fold(r, fold_id)


def fold(r: redis.Redis, session_scope: Callable[[], ContextManager[Session]], now: float | None = None) -> FoldReport:
    """One run of the beat task: first the folds left by dead or failed runs, then everything
    pending. A failure leaves the pending views where they are (and the failed fold for the
    next run) and raises."""
    report = FoldReport()
    for fold_id in claim_stale_folds(r, now):
        _fold_one(r, session_scope, fold_id, report)
    fold_id = take_pending(r, now)
    if fold_id is not None:
        _fold_one(r, session_scope, fold_id, report)
    return report
