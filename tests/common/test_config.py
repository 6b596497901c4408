"""Settings from the environment, and the refusals that keep a bad deployment from starting."""
from __future__ import annotations

import pytest

from common.config import DEV_JWT_SECRET, ConfigError, load_settings

PROD = {"APP_ENV": "production", "JWT_SECRET": "x" * 48, "CLOUDINARY_URL": "cloudinary://k:s@cloud"}


def test_defaults_and_fallbacks():
    settings = load_settings({"REDIS_URL": "redis://r:6379/3", "PUBLIC_URL": "https://api.example.org/"})
    assert settings.broker_url == "redis://r:6379/3"  # CELERY_BROKER_URL falls back to REDIS_URL
    assert settings.public_url == "https://api.example.org"
    assert (settings.token_ttl, settings.upload_form_ttl) == (14400, 604800)
    assert settings.database_url.startswith("sqlite:///") and settings.database_url.endswith("var/album.db")
    assert load_settings({"CELERY_BROKER_URL": "redis://b/0", "REDIS_URL": "redis://r/0"}).broker_url == "redis://b/0"


def test_production_starts_with_real_secrets():
    assert load_settings(PROD).production


@pytest.mark.parametrize("change", [{"JWT_SECRET": ""}, {"JWT_SECRET": DEV_JWT_SECRET}, {"JWT_SECRET": "short"}, {"CLOUDINARY_URL": ""}])
def test_production_refuses_development_secrets_with_a_clear_message(change):
    with pytest.raises(ConfigError, match="APP_ENV=production needs"):
        load_settings({**PROD, **change})


def test_create_app_refuses_too(settings):
    from web import create_app

    with pytest.raises(ConfigError):
        create_app(settings.with_overrides(env="production", jwt_secret=DEV_JWT_SECRET))


def test_bad_numbers_and_a_visibility_timeout_too_short_for_the_tasks_are_refused():
    with pytest.raises(ConfigError, match="TOKEN_TTL"):
        load_settings({"TOKEN_TTL": "four hours"})
    with pytest.raises(ConfigError, match="HEAL_INTERVAL"):
        load_settings({"HEAL_INTERVAL": "often"})
    with pytest.raises(ConfigError, match="BROKER_VISIBILITY_TIMEOUT"):
        load_settings({"BROKER_VISIBILITY_TIMEOUT": "5"})
    assert load_settings({"BROKER_VISIBILITY_TIMEOUT": "120"}).queue_max_countdown == 30


def test_the_cloudinary_call_timeout_is_30_s_unless_set():
    assert load_settings({}).cloudinary_call_timeout == 30.0
    assert load_settings({"CLOUDINARY_CALL_TIMEOUT": "4"}).cloudinary_call_timeout == 4.0
    for bad in ("0.5", "nan", "soon"):
        with pytest.raises(ConfigError, match="CLOUDINARY_CALL_TIMEOUT"):
            load_settings({"CLOUDINARY_CALL_TIMEOUT": bad})


def test_view_settings():
    defaults = load_settings({})
    assert (defaults.count_views, defaults.view_window, defaults.view_fold_interval) == (True, 1800, 5.0)
    custom = load_settings({"VIEW_COUNTING": "off", "VIEW_WINDOW": "60", "VIEW_FOLD_INTERVAL": "0.5"})
    assert (custom.count_views, custom.view_window, custom.view_fold_interval) == (False, 60, 0.5)
    for env, name in (({"VIEW_COUNTING": "maybe"}, "VIEW_COUNTING"), ({"VIEW_WINDOW": "0"}, "VIEW_WINDOW"),
                      ({"VIEW_FOLD_INTERVAL": "soon"}, "VIEW_FOLD_INTERVAL"), ({"VIEW_FOLD_INTERVAL": "0"}, "VIEW_FOLD_INTERVAL")):
        with pytest.raises(ConfigError, match=name):
            load_settings(env)
