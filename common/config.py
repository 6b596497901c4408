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


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number of seconds, got {raw!r}") from exc


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    database_url: str = f"sqlite:///{PROJECT_ROOT / 'var' / 'album.db'}"
    broker_url: str = "redis://127.0.0.1:6379/0"
    cloudinary_url: str = DEV_CLOUDINARY_URL
    jwt_secret: str = DEV_JWT_SECRET
    public_url: str = "http://127.0.0.1:5000"
    token_ttl: int = 14400
    upload_form_ttl: int = 604800
    #: How long a publish to the broker may take before the API answers 503.
    broker_publish_timeout: float = 1.0
    #: Redis' visibility timeout: above the longest task plus its longest countdown.
    broker_visibility_timeout: int = 3600
    #: Webhook: oldest accepted X-Cld-Timestamp (Cloudinary retries for minutes) and future skew.
    webhook_max_age: int = 7200
    webhook_max_skew: int = 300
    #: Near-duplicate threshold: pHash Hamming distance in bits.
    duplicate_threshold: int = 6
    #: An image in one stage for longer than this is re-enqueued by the beat sweep.
    stuck_after: int = 900
    recount_debounce: float = 2.0
    reconcile_coalesce: float = 10.0
    #: The beat reconciles albums whose upload form went out within this window (lost webhooks).
    active_album_window: int = 86400
    #: fetch_metadata keeps this many Admin API calls per window for itself; reconcile waits below it.
    admin_budget_reserve: int = 50
    #: Longest wait on a rate-limited Admin API before retrying (below the visibility timeout).
    rate_limit_max_wait: int = 900
    flower_user: str = "admin"
    flower_password: str = "admin"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def production(self) -> bool:
        return self.env == "production"

    def with_overrides(self, **changes: Any) -> "Settings":
        return replace(self, **changes)

    def check(self) -> None:
        """Refuse settings that cannot work, and production on development defaults."""
        if self.rate_limit_max_wait >= self.broker_visibility_timeout:
            # A task waiting longer than the visibility timeout would be redelivered meanwhile.
            raise ConfigError(
                f"RATE_LIMIT_MAX_WAIT ({self.rate_limit_max_wait}s) must stay below "
                f"BROKER_VISIBILITY_TIMEOUT ({self.broker_visibility_timeout}s)"
            )
        if not self.production:
            return
        if not self.jwt_secret or self.jwt_secret == DEV_JWT_SECRET or len(self.jwt_secret) < 32:
            raise ConfigError(
                "APP_ENV=production needs JWT_SECRET set to a random secret of 32+ characters "
                "(for example: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        if self.cloudinary_url == DEV_CLOUDINARY_URL:
            raise ConfigError("APP_ENV=production needs CLOUDINARY_URL (cloudinary://KEY:SECRET@CLOUD)")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from an environment mapping (``os.environ`` by default)."""
    env = os.environ if env is None else env
    defaults = Settings()
    broker = env.get("CELERY_BROKER_URL") or env.get("REDIS_URL") or defaults.broker_url
    settings = Settings(
        env=env.get("APP_ENV", defaults.env),
        database_url=env.get("DATABASE_URL") or defaults.database_url,
        broker_url=broker,
        cloudinary_url=env.get("CLOUDINARY_URL") or defaults.cloudinary_url,
        jwt_secret=env.get("JWT_SECRET") or defaults.jwt_secret,
        public_url=(env.get("PUBLIC_URL") or defaults.public_url).rstrip("/"),
        token_ttl=_int(env, "TOKEN_TTL", defaults.token_ttl),
        upload_form_ttl=_int(env, "UPLOAD_FORM_TTL", defaults.upload_form_ttl),
        broker_visibility_timeout=_int(env, "BROKER_VISIBILITY_TIMEOUT", defaults.broker_visibility_timeout),
        webhook_max_age=_int(env, "WEBHOOK_MAX_AGE", defaults.webhook_max_age),
        duplicate_threshold=_int(env, "DUPLICATE_THRESHOLD", defaults.duplicate_threshold),
        stuck_after=_int(env, "STUCK_AFTER", defaults.stuck_after),
        recount_debounce=float(env.get("RECOUNT_DEBOUNCE") or defaults.recount_debounce),
        reconcile_coalesce=float(env.get("RECONCILE_COALESCE") or defaults.reconcile_coalesce),
        admin_budget_reserve=_int(env, "ADMIN_BUDGET_RESERVE", defaults.admin_budget_reserve),
        active_album_window=_int(env, "ACTIVE_ALBUM_WINDOW", defaults.active_album_window),
        rate_limit_max_wait=_int(env, "RATE_LIMIT_MAX_WAIT", defaults.rate_limit_max_wait),
        flower_user=env.get("FLOWER_USER") or defaults.flower_user,
        flower_password=env.get("FLOWER_PASSWORD") or defaults.flower_password,
    )
    settings.check()
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
