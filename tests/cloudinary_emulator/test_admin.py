"""Admin API through the SDK: resource, resources_by_tag with cursors, delete, auth, budget."""
from __future__ import annotations

import email.utils
import time
from pathlib import Path

import cloudinary
import cloudinary.api
import cloudinary.uploader
import pytest
import requests
from cloudinary.exceptions import AuthorizationRequired, BadRequest, NotFound, RateLimited

from cloudinary_emulator.faults import AdminBudget, Faults
from cloudinary_emulator.testing import EmulatorProcess


def test_resource_returns_the_upload_analysis(emu: EmulatorProcess, photos: Path) -> None:
    uploaded = cloudinary.uploader.upload(
        str(photos / "astronaut.jpg"), public_id="a1", type="authenticated",
        faces=True, colors=True, image_metadata=True, phash=True)
    resource = cloudinary.api.resource("a1", type="authenticated", faces=True, colors=True,
                                       image_metadata=True, phash=True)
    for key in ("asset_id", "public_id", "version", "width", "height", "format", "bytes",
                "etag", "faces", "colors", "predominant", "phash", "image_metadata", "url"):
        assert resource[key] == uploaded[key], key
    assert resource["faces"] == [[177, 67, 95, 95]]
    plain = cloudinary.api.resource("a1", type="authenticated")
    assert "faces" not in plain and "phash" not in plain
    with pytest.raises(NotFound):
        cloudinary.api.resource("a1")  # type "upload" holds no such asset


def test_resources_by_tag_pages_with_cursors(emu: EmulatorProcess, photos: Path) -> None:
    path = str(photos / "astronaut-small.jpg")
    ids = [f"tagged/{i}" for i in range(7)]
    for pid in ids:
        cloudinary.uploader.upload(path, public_id=pid, tags=["album-1"])
    cloudinary.uploader.upload(path, public_id="other", tags=["album-2"])
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = cloudinary.api.resources_by_tag("album-1", max_results=3, next_cursor=cursor)
        pages += 1
        seen += [r["public_id"] for r in page["resources"]]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    assert pages == 3
    assert seen == ids  # stable upload order, no repeats, nothing missed
    default = cloudinary.api.resources_by_tag("album-1", tags=True)
    assert len(default["resources"]) == 7 and "next_cursor" not in default
    assert default["resources"][0]["tags"] == ["album-1"]


def test_bad_cursor_and_max_results_are_400(emu: EmulatorProcess) -> None:
    with pytest.raises(BadRequest, match="next_cursor"):
        cloudinary.api.resources_by_tag("x", next_cursor="not-a-cursor")
    with pytest.raises(BadRequest, match="max_results"):
        cloudinary.api.resources_by_tag("x", max_results=501)


def test_delete_resources(emu: EmulatorProcess, photos: Path) -> None:
    cloudinary.uploader.upload(str(photos / "coffee.jpg"), public_id="d1", type="authenticated")
    answer = cloudinary.api.delete_resources(["d1", "missing"], type="authenticated")
    assert answer["deleted"] == {"d1": "deleted", "missing": "not_found"}
    assert answer["partial"] is False
    with pytest.raises(NotFound):
        cloudinary.api.resource("d1", type="authenticated")


def test_wrong_secret_is_401(emu: EmulatorProcess) -> None:
    with pytest.raises(AuthorizationRequired):
        cloudinary.api.resources_by_tag("x", api_secret="wrong")


def test_budget_exhausted_raises_rate_limited(emu: EmulatorProcess) -> None:
    emu.set_faults(admin_budget=3)
    first = cloudinary.api.resources_by_tag("x")
    assert first.rate_limit_allowed == 3 and first.rate_limit_remaining == 2
    assert first.rate_limit_reset_at is not None  # a time tuple, parsed by the SDK
    reset_at = email.utils.mktime_tz(first.rate_limit_reset_at + (0,))
    assert time.time() < reset_at <= time.time() + 3601
    cloudinary.api.resources_by_tag("x")
    third = cloudinary.api.resources_by_tag("x")
    assert third.rate_limit_remaining == 0
    with pytest.raises(RateLimited, match="Rate Limit Exceeded"):
        cloudinary.api.resources_by_tag("x")
    # The SDK's exception carries only the message; the 420 answer itself has the headers.
    raw = requests.get(f"{emu.base_url}/v1_1/demo/resources/image/tags/x",
                       auth=(emu.api_key, emu.api_secret), timeout=10)
    assert raw.status_code == 420
    assert raw.json() == {"error": {"message": "Rate Limit Exceeded"}}
    assert raw.headers["X-FeatureRateLimit-Limit"] == "3"
    assert raw.headers["X-FeatureRateLimit-Remaining"] == "0"
    assert email.utils.parsedate_to_datetime(raw.headers["X-FeatureRateLimit-Reset"]).timestamp() == reset_at
    stats = emu.stats()
    assert stats["admin_calls"] == 5 and stats["rate_limited"] == 2
    # The Upload API is not rate-limited.
    assert emu.stats()["calls"]["admin_resources_by_tag"] == 5


def test_budget_window_expires() -> None:
    # Driven with explicit clock values: no sleeping, no dependence on machine speed.
    budget = AdminBudget()
    faults = Faults(admin_budget=2, admin_window_seconds=60)
    assert budget.spend(faults, now=1000).remaining == 1
    assert budget.spend(faults, now=1010).allowed
    refused = budget.spend(faults, now=1059)
    assert not refused.allowed and refused.reset_at == 1060
    fresh = budget.spend(faults, now=1060)
    assert fresh.allowed and fresh.remaining == 1 and fresh.reset_at == 1120
