"""Settings read from the environment once, into one typed object.

Everything that varies between a laptop, CI and production lives here (the Celery settings in
``celeryconfig.py`` take theirs from here too); only test-time switches such as
``OPENAPI_VALIDATE_RESPONSES`` are read where they act.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: The secret a development checkout runs with. Production refuses it.
DEV_JWT_SECRET = "dev-insecure-jwt-secret-do-not-use-in-production"
#: Used when no CLOUDINARY_URL is set: the embedded emulator's defaults (see Procfile).
DEV_CLOUDINARY_URL = (
    "cloudinary://123123123123:emulator-secret@demo"
    "?upload_prefix=http://127.0.0.1:9443&cname=127.0.0.1:9443&secure=false"
)


class ConfigError(RuntimeError):
    """The environment cannot run the app; the message says what to set."""


def _number(env: Mapping[str, str], name: str, default: Any) -> Any:
    """``env[name]`` as a number of the default's type (int or float), else the default."""
    raw = env.get(name)
    if raw in (None, ""):
        return default
    kind = type(default)
    try:
        return kind(raw)
    except ValueError as exc:
        what = "a whole number" if kind is int else "a number"
        raise ConfigError(f"{name} must be {what} of seconds, got {raw!r}") from exc


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    return _number(env, name, default)


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    return _number(env, name, default)


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 1 or 0 (true/false, on/off), got {raw!r}")


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    database_url: str = f"sqlite:///{PROJECT_ROOT / 'var' / 'album.db'}"
    broker_url: str = "redis://127.0.0.1:6379/0"
    #: The name Redis Sentinel monitors; needed when ``broker_url`` is ``sentinel://...``.
    redis_master_name: str | None = None
    cloudinary_url: str = DEV_CLOUDINARY_URL
    jwt_secret: str = DEV_JWT_SECRET
    public_url: str = "http://127.0.0.1:5000"
    token_ttl: int = 14400
    upload_form_ttl: int = 604800
    #: How long a publish to the broker may take before the API answers 503.
    broker_publish_timeout: float = 1.0
    #: A message a worker took and never acknowledged (the worker was killed) is delivered again
    #: after this long. Above the longest task (Cloudinary calls time out after 30 s) plus the
    #: longest countdown held in the queue (a quarter of it, at most 60 s).
    broker_visibility_timeout: int = 120
    #: Seconds any Cloudinary call may wait for its answer (the SDK has none: a hung call would
    #: hold a worker thread for ever). A task makes at most two calls, which must fit the tasks'
    #: soft time limit (``BROKER_VISIBILITY_TIMEOUT`` - 20 s). Shorter where a test stages a hung
    #: Cloudinary.
    cloudinary_call_timeout: float = 30.0
    #: Webhook: oldest accepted X-Cld-Timestamp (Cloudinary retries for minutes) and future skew.
    webhook_max_age: int = 7200
    webhook_max_skew: int = 300
    #: Near-duplicate threshold: pHash Hamming distance in bits (at most the index's largest, 7).
    duplicate_threshold: int = 6
    #: A second upload of bytes already in the album (same etag) is dropped (deleted on arrival,
    #: its asset destroyed). Off: every upload is kept, as a load test re-sending a few files wants.
    drop_same_bytes: bool = True
    #: How long a dispatched stage may stay unfinished before the heal task dispatches it again
    #: (its message may be lost: a Redis restart, a killed worker). Each re-dispatch doubles it.
    stage_lease: int = 30
    #: How often the beat runs the heal task (re-dispatch, recount, reconcile, destroy).
    heal_interval: float = 10.0
    #: Transient failures (Cloudinary 5xx, network, database) are retried with backoff for this
    #: long after the work began; then the stage fails with the last reason.
    retry_window: int = 86400
    #: Longest pause between two retries of a transient failure.
    retry_backoff_max: int = 600
    recount_debounce: float = 2.0
    reconcile_coalesce: float = 10.0
    #: Albums whose upload form went out within this window are reconciled now and then (lost
    #: webhooks of clients that never call upload_done again) and after a broker loss.
    active_album_window: int = 86400
    #: How often an active album is re-listed (incrementally: only what is newer than last time).
    reconcile_interval: int = 1800
    #: How often an active album's whole tag is walked (the incremental one stops at the watermark).
    full_reconcile_interval: int = 86400
    #: The incremental reconcile lists this far below the last watermark (clock skew, listings
    #: that show a fresh upload late).
    reconcile_overlap: int = 600
    #: Reconcile leaves this many Admin API calls of each window unspent for the account's other
    #: users (at most a tenth of the window's limit).
    admin_budget_reserve: int = 50
    #: Album views: counted at all (off: the album read makes no Redis call for them).
    count_views: bool = True
    #: A user's reads of one album within this many seconds are one view.
    view_window: int = 1800
    #: The beat folds pending views into the database every this many seconds.
    view_fold_interval: float = 5.0
    flower_user: str = "admin"
    flower_password: str = "admin"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def queue_max_countdown(self) -> float:
        """The longest retry countdown held in the queue: a worker keeps such a message
        unacknowledged, and one held past the visibility timeout would run twice. Longer pauses
        are kept in the database and carried out by the heal task."""
        return min(60.0, self.broker_visibility_timeout / 4)

    @property
    def production(self) -> bool:
        return self.env == "production"

    def with_overrides(self, **changes: Any) -> "Settings":
        return replace(self, **changes)

    def check(self) -> None:
        """Refuse settings that cannot work, and production on development defaults."""
        if self.broker_visibility_timeout < 20:
            # Tasks and their retry countdowns must fit well inside it, or they run twice.
            raise ConfigError(f"BROKER_VISIBILITY_TIMEOUT must be at least 20 s, got {self.broker_visibility_timeout}")
        if not self.cloudinary_call_timeout >= 1:
            raise ConfigError(f"CLOUDINARY_CALL_TIMEOUT must be at least 1 s, got {self.cloudinary_call_timeout:g}")
        if self.stage_lease < 1 or self.heal_interval <= 0:
            raise ConfigError("STAGE_LEASE must be at least 1 s and HEAL_INTERVAL above 0")
        if self.broker_url.startswith("sentinel://"):
            self._check_sentinel()
        if self.view_window < 1:
            raise ConfigError(f"VIEW_WINDOW must be at least 1 second, got {self.view_window}")
        if self.view_fold_interval <= 0:
            raise ConfigError(f"VIEW_FOLD_INTERVAL must be above 0 seconds, got {self.view_fold_interval}")
        from common.duplicates import MAX_THRESHOLD

        if not 0 <= self.duplicate_threshold <= MAX_THRESHOLD:
            # The duplicates index answers thresholds up to MAX_THRESHOLD only.
            raise ConfigError(f"DUPLICATE_THRESHOLD must be 0 to {MAX_THRESHOLD} bits, got {self.duplicate_threshold}")
        if not self.production:
            return
        if not self.jwt_secret or self.jwt_secret == DEV_JWT_SECRET or len(self.jwt_secret) < 32:
            raise ConfigError(
                "APP_ENV=production needs JWT_SECRET set to a random secret of 32+ characters "
                "(for example: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        if self.cloudinary_url == DEV_CLOUDINARY_URL:
            raise ConfigError("APP_ENV=production needs CLOUDINARY_URL (cloudinary://KEY:SECRET@CLOUD)")

    def _check_sentinel(self) -> None:
        from common.redis_conn import parse_sentinel_url

        if not self.redis_master_name:
            raise ConfigError(
                "CELERY_BROKER_URL is a sentinel:// URL: set REDIS_MASTER_NAME to the master name "
                "the Sentinels monitor (their 'sentinel monitor <name> ...' line)"
            )
        try:
            parse_sentinel_url(self.broker_url)
        except ValueError as exc:
            raise ConfigError(f"CELERY_BROKER_URL: {exc}") from None


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from an environment mapping (``os.environ`` by default)."""
    env = os.environ if env is None else env
    defaults = Settings()
    broker = env.get("CELERY_BROKER_URL") or env.get("REDIS_URL") or defaults.broker_url
    settings = Settings(
        env=env.get("APP_ENV", defaults.env),
        database_url=env.get("DATABASE_URL") or defaults.database_url,
        broker_url=broker,
        redis_master_name=env.get("REDIS_MASTER_NAME") or None,
        cloudinary_url=env.get("CLOUDINARY_URL") or defaults.cloudinary_url,
        jwt_secret=env.get("JWT_SECRET") or defaults.jwt_secret,
        public_url=(env.get("PUBLIC_URL") or defaults.public_url).rstrip("/"),
        token_ttl=_int(env, "TOKEN_TTL", defaults.token_ttl),
        upload_form_ttl=_int(env, "UPLOAD_FORM_TTL", defaults.upload_form_ttl),
        broker_visibility_timeout=_int(env, "BROKER_VISIBILITY_TIMEOUT", defaults.broker_visibility_timeout),
        cloudinary_call_timeout=_float(env, "CLOUDINARY_CALL_TIMEOUT", defaults.cloudinary_call_timeout),
        webhook_max_age=_int(env, "WEBHOOK_MAX_AGE", defaults.webhook_max_age),
        duplicate_threshold=_int(env, "DUPLICATE_THRESHOLD", defaults.duplicate_threshold),
        drop_same_bytes=_bool(env, "DROP_SAME_BYTES", defaults.drop_same_bytes),
        stage_lease=_int(env, "STAGE_LEASE", defaults.stage_lease),
        heal_interval=_float(env, "HEAL_INTERVAL", defaults.heal_interval),
        retry_window=_int(env, "RETRY_WINDOW", defaults.retry_window),
        retry_backoff_max=_int(env, "RETRY_BACKOFF_MAX", defaults.retry_backoff_max),
        recount_debounce=_float(env, "RECOUNT_DEBOUNCE", defaults.recount_debounce),
        reconcile_coalesce=_float(env, "RECONCILE_COALESCE", defaults.reconcile_coalesce),
        active_album_window=_int(env, "ACTIVE_ALBUM_WINDOW", defaults.active_album_window),
        reconcile_interval=_int(env, "RECONCILE_INTERVAL", defaults.reconcile_interval),
        full_reconcile_interval=_int(env, "FULL_RECONCILE_INTERVAL", defaults.full_reconcile_interval),
        reconcile_overlap=_int(env, "RECONCILE_OVERLAP", defaults.reconcile_overlap),
        admin_budget_reserve=_int(env, "ADMIN_BUDGET_RESERVE", defaults.admin_budget_reserve),
        count_views=_bool(env, "VIEW_COUNTING", defaults.count_views),
        view_window=_int(env, "VIEW_WINDOW", defaults.view_window),
        view_fold_interval=_float(env, "VIEW_FOLD_INTERVAL", defaults.view_fold_interval),
        flower_user=env.get("FLOWER_USER") or defaults.flower_user,
        flower_password=env.get("FLOWER_PASSWORD") or defaults.flower_password,
    )
    settings.check()
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
