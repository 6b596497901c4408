"""Notification tokens: the signature check is cached per token, the time check is not."""
from __future__ import annotations

import pytest

from common import tokens

SECRET = "test-secret-test-secret-test-secret-0123"


def test_a_cached_token_still_expires_with_its_form():
    token = tokens.notification_token("u", "ALB", "org", SECRET, 14400, now=1_000_000)
    assert tokens.decode_notification(token, SECRET, 604800, now=1_000_000)["album_id"] == "ALB"
    with pytest.raises(tokens.TokenError, match="expired"):
        tokens.decode_notification(token, SECRET, 604800, now=1_000_000 + 604800 + 3600)


def test_a_forged_token_fails_after_the_genuine_one_was_cached():
    token = tokens.notification_token("u", "ALB", "org", SECRET, 14400)
    claims = tokens.decode_notification(token, SECRET, 604800)
    claims["album_id"] = "MUTATED"  # the caller's copy: the cache keeps its own
    assert tokens.decode_notification(token, SECRET, 604800)["album_id"] == "ALB"
    header, payload, signature = token.split(".")
    forged = f"{header}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    with pytest.raises(tokens.TokenError):
        tokens.decode_notification(forged, SECRET, 604800)
    with pytest.raises(tokens.TokenError):
        tokens.decode_notification(token, SECRET + "-other", 604800)
