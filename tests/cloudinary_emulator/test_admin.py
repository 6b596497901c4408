"""Admin API through the SDK: resource, resources_by_tag with cursors, delete, auth, budget."""
from __future__ import annotations

import email.utils
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import cloudinary
import cloudinary.api
import cloudinary.uploader
import pytest
import requests
from cloudinary.exceptions import AlreadyExists, AuthorizationRequired, BadRequest, NotFound, RateLimited

from cloudinary_emulator.faults import AdminBudget, Faults
from cloudinary_emulator.testing import EmulatorProcess
from tests.cloudinary_emulator.conftest import detected_faces


def test_resource_returns_the_upload_analysis(emu: EmulatorProcess, photos: Path) -> None:
    uploaded = cloudinary.uploader.upload(
        str(photos / "astronaut.jpg"), public_id="a1", type="authenticated",
        faces=True, colors=True, image_metadata=True, phash=True)
    resource = cloudinary.api.resource("a1", type="authenticated", faces=True, colors=True,
                                       image_metadata=True, phash=True)
    for key in ("asset_id", "public_id", "version", "width", "height", "format", "bytes",
                "etag", "faces", "colors", "predominant", "phash", "image_metadata", "url"):
        assert resource[key] == uploaded[key], key
    assert resource["faces"] == detected_faces("astronaut.jpg")
    plain = cloudinary.api.resource("a1", type="authenticated")
    assert "faces" not in plain and "phash" not in plain
    with pytest.raises(NotFound):
        cloudinary.api.resource("a1")  # type "upload" holds no such asset


def walk(listing: Callable[..., dict[str, Any]], *args: Any, **options: Any) -> tuple[list[str], int]:
    """Every public_id of a paged listing, in order, and the number of pages it took."""
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = listing(*args, next_cursor=cursor, **options)
        pages += 1
        seen += [r["public_id"] for r in page["resources"]]
        cursor = page.get("next_cursor")
        if not cursor:
            return seen, pages


def test_resources_by_tag_newest_first_with_cursors(emu: EmulatorProcess, photos: Path) -> None:
    path = str(photos / "astronaut-small.jpg")
    ids = [f"tagged/{i}" for i in range(7)]
    before = time.time()
    for pid in ids:
        cloudinary.uploader.upload(path, public_id=pid, tags=["album-1"])
    cloudinary.uploader.upload(path, public_id="other", tags=["album-2"])
    after = time.time()
    newest_first = list(reversed(ids))
    assert walk(cloudinary.api.resources_by_tag, "album-1", max_results=3) == (newest_first, 3)
    for direction in ("desc", "-1", -1):
        assert walk(cloudinary.api.resources_by_tag, "album-1", max_results=3,
                    direction=direction)[0] == newest_first
    for direction in ("asc", "1", 1):
        assert walk(cloudinary.api.resources_by_tag, "album-1", max_results=3,
                    direction=direction)[0] == ids
    default = cloudinary.api.resources_by_tag("album-1", tags=True)
    assert len(default["resources"]) == 7 and "next_cursor" not in default
    assert default["resources"][0]["tags"] == ["album-1"]
    # created_at is the upload time (whole seconds, UTC) and the listing is ordered by it.
    stamps = [r["created_at"] for r in default["resources"]]
    assert stamps == sorted(stamps, reverse=True)
    for stamp in stamps:
        moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        assert int(before) <= moment.timestamp() <= after


def test_paging_is_stable_while_uploads_arrive(emu: EmulatorProcess, photos: Path) -> None:
    path = str(photos / "astronaut-small.jpg")
    old = [f"old/{i}" for i in range(6)]
    for pid in old:
        cloudinary.uploader.upload(path, public_id=pid, tags=["busy"])
    first = cloudinary.api.resources_by_tag("busy", max_results=2)
    # New uploads land in front of a newest-first walk: the rest of the walk is unchanged.
    cloudinary.uploader.upload(path, public_id="new/0", tags=["busy"])
    cloudinary.uploader.destroy("old/0")
    seen = [r["public_id"] for r in first["resources"]]
    cursor = first["next_cursor"]
    while cursor:
        page = cloudinary.api.resources_by_tag("busy", max_results=2, next_cursor=cursor)
        seen += [r["public_id"] for r in page["resources"]]
        cursor = page.get("next_cursor")
    assert seen == ["old/5", "old/4", "old/3", "old/2", "old/1"]


def test_overwrite_moves_an_asset_to_its_new_created_at(emu: EmulatorProcess, photos: Path) -> None:
    path = str(photos / "astronaut-small.jpg")
    for pid in ("o/1", "o/2"):
        cloudinary.uploader.upload(path, public_id=pid, tags=["o"])
    cloudinary.uploader.upload(path, public_id="o/1", tags=["o"])
    assert walk(cloudinary.api.resources_by_tag, "o")[0] == ["o/1", "o/2"]


def test_resources_by_type_prefix_and_start_at(emu: EmulatorProcess, photos: Path) -> None:
    path = str(photos / "astronaut-small.jpg")
    for pid in ("b/2", "a/1", "b/1"):
        cloudinary.uploader.upload(path, public_id=pid)
    cloudinary.uploader.upload(path, public_id="b/3", type="authenticated")
    assert walk(cloudinary.api.resources, type="upload", max_results=2)[0] == ["b/1", "a/1", "b/2"]
    assert walk(cloudinary.api.resources, type="upload", direction="asc")[0] == ["b/2", "a/1", "b/1"]
    assert walk(cloudinary.api.resources)[0] == ["b/3", "b/1", "a/1", "b/2"]  # every type
    # With a prefix, Cloudinary sorts by public_id.
    assert walk(cloudinary.api.resources, type="upload", prefix="b/", max_results=1) == (["b/1", "b/2"], 2)
    assert walk(cloudinary.api.resources, prefix="b/")[0] == ["b/1", "b/2", "b/3"]
    future = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() + 3600))
    assert cloudinary.api.resources(start_at=future)["resources"] == []
    past = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    assert len(cloudinary.api.resources(start_at=past)["resources"]) == 4


def test_bad_cursor_max_results_and_direction_are_400(emu: EmulatorProcess, photos: Path) -> None:
    for pid in ("c/1", "c/2"):
        cloudinary.uploader.upload(str(photos / "astronaut-small.jpg"), public_id=pid, tags=["c"])
    by_date = cloudinary.api.resources(max_results=1)["next_cursor"]
    with pytest.raises(BadRequest, match="next_cursor"):
        cloudinary.api.resources(prefix="c/", next_cursor=by_date)
    with pytest.raises(BadRequest, match="direction"):
        cloudinary.api.resources_by_tag("c", direction="sideways")
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


def test_bulk_seed_lists_like_uploads(emu: EmulatorProcess, photos: Path) -> None:
    """The seeding test aid: cheap, many assets, listed newest first and usable like uploads."""
    start = time.time() - 10_000
    answer = emu.seed(2_000, tags=["big"], prefix="s/", type="authenticated", start=start,
                      interval=2.0)
    assert answer["seeded"] == 2_000 and answer["last"] == "s/1999"
    cloudinary.uploader.upload(str(photos / "astronaut-small.jpg"), public_id="fresh",
                               type="authenticated", tags=["big"])
    page = cloudinary.api.resources_by_tag("big", max_results=500)
    ids = [r["public_id"] for r in page["resources"]]
    assert ids[:3] == ["fresh", "s/1999", "s/1998"] and len(ids) == 500
    assert page["resources"][1]["created_at"] == time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + 1999 * 2))
    assert walk(cloudinary.api.resources_by_tag, "big", max_results=500)[1] == 5
    seeded = cloudinary.api.resource("s/7", type="authenticated", phash=True)
    assert seeded["phash"] and seeded["tags"] == ["big"]
    delivered = requests.get(seeded["url"], timeout=10)
    assert delivered.status_code == 200 and delivered.content[:2] == b"\xff\xd8"
    # They share one stored file: deleting one leaves the others deliverable.
    assert cloudinary.api.delete_resources(["s/7"], type="authenticated")["deleted"] == {"s/7": "deleted"}
    other = cloudinary.api.resource("s/8", type="authenticated")
    assert requests.get(other["url"], timeout=10).status_code == 200
    bad = requests.post(emu.base_url + "/_emulator/seed", json={"count": 0}, timeout=10)
    assert bad.status_code == 400 and "count" in bad.json()["error"]["message"]


def test_exclusive_tag_and_remove_all_tags(emu: EmulatorProcess, photos: Path) -> None:
    for pid in ("x/1", "x/2"):
        cloudinary.uploader.upload(str(photos / "astronaut-small.jpg"), public_id=pid, tags=["cover", "x"])
    assert cloudinary.uploader.add_tag("cover", ["x/2"], exclusive=True)["public_ids"] == ["x/2"]
    assert cloudinary.api.resource("x/1")["tags"] == ["x"]
    assert cloudinary.api.resource("x/2")["tags"] == ["cover", "x"]
    assert cloudinary.uploader.remove_all_tags(["x/2", "missing"])["public_ids"] == ["x/2"]
    assert cloudinary.api.resource("x/2")["tags"] == []
    with pytest.raises(NotFound):
        cloudinary.uploader.rename("missing", "elsewhere")
    cloudinary.uploader.upload(str(photos / "coffee.jpg"), public_id="x/3")
    with pytest.raises(AlreadyExists):
        cloudinary.uploader.rename("x/1", "x/3")
    assert cloudinary.uploader.rename("x/1", "x/3", overwrite=True)["width"] == 256
