"""The whole chain, real parts only: upload_done's form -> the official SDK uploads to the
emulator -> the emulator's signed notification -> our webhook -> Celery on Redis -> database."""
from __future__ import annotations

import io

import requests
from PIL import Image as PILImage

from tests.conftest import FIXTURES
from tests.e2e.conftest import Stack, wait_for

PHOTOS = sorted(FIXTURES.glob("*.jpg"))


def by_name(images: list[dict], uploads: dict[str, dict]) -> dict[str, dict]:
    ids = {upload["public_id"]: name for name, upload in uploads.items()}
    return {ids[image["public_id"]]: image for image in images}


def test_every_photo_ends_ready_with_its_analysis_and_no_admin_call(stack: Stack, album: str) -> None:
    before = stack.emulator.stats()
    form = stack.upload_done(album)["upload_form"]
    uploads = {photo.name: stack.upload(form, photo) for photo in PHOTOS}

    images = by_name(stack.wait_all_ready(album, len(PHOTOS)), uploads)
    assert {name: img["status"] for name, img in images.items()} == {p.name: "ready" for p in PHOTOS}

    # The emulator's analysis, as the notification carried it.
    assert len(images["astronaut.jpg"]["faces"]) == 1
    assert images["chelsea.jpg"]["image_metadata"]["Make"] == "Canon"
    for name, img in images.items():
        assert img["phash"] == uploads[name]["phash"]
        assert img["colors"] == uploads[name]["colors"]
        assert (img["width"], img["height"]) == (uploads[name]["width"], uploads[name]["height"])

    # Thumbnails that delivery serves at the asked size.
    for img in images.values():
        thumb = requests.get(img["thumbnail_url"], timeout=10)
        assert thumb.status_code == 200
        assert PILImage.open(io.BytesIO(thumb.content)).size == (256, 256)
        preview = requests.get(img["preview_url"], timeout=10)
        assert preview.status_code == 200

    # astronaut.jpg and astronaut-small.jpg are one near-duplicate group.
    groups = stack.api("GET", f"/api/v1/albums/{album}/duplicates", album).json()["groups"]
    grouped = [{m["public_id"] for m in g} for g in groups]
    assert {uploads["astronaut.jpg"]["public_id"], uploads["astronaut-small.jpg"]["public_id"]} in grouped

    # Count and cover, exact once the debounced recount has run.
    def counted() -> dict | None:
        body = stack.album(album)
        return body if body["images_count"] == len(PHOTOS) and len(body["thumbnails"]) == 4 else None

    body = wait_for(counted, 30, what="images_count and cover")
    assert all(t["url"] and t["width"] == 256 for t in body["thumbnails"])

    # The notifications carried the analysis: not one Admin API resource call for these photos.
    after = stack.emulator.stats()
    assert after["calls"]["admin_resource"] == before["calls"]["admin_resource"]
