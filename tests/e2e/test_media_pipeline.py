"""A client without the page (issue 14): a video and a HEIC photo uploaded with the SDK through
the album's signed form become ready through the real chain (emulator, webhook, gunicorn,
Celery workers on Redis), with their resource type, original name, a video's duration and its
poster; the same bytes sent again are not stored twice."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image as PILImage

from common import db
from common.models import Image
from tests.e2e.stack import wait_for

MEDIA = Path(__file__).resolve().parent.parent / "fixtures" / "media"


def test_a_video_and_a_heic_photo_become_ready_and_a_resent_file_is_not_stored_twice(stack: Any, album: str) -> None:
    form = stack.upload_done(album)["upload_form"]
    video = stack.upload(form, MEDIA / "clip.mp4")
    heic = stack.upload(form, MEDIA / "astronaut.heic")
    assert (video["resource_type"], heic["resource_type"], heic["format"]) == ("video", "image", "heic")
    stack.upload_done(album)
    images = {i["public_id"]: i for i in stack.wait_all_ready(album, 2)}

    clip = images[video["public_id"]]
    assert clip["status"] == "ready", clip["error"]
    assert (clip["resource_type"], clip["original_filename"], clip["format"]) == ("video", "clip", "mp4")
    assert clip["duration"] == pytest.approx(3.0, abs=0.05) and clip["etag"] == video["etag"]
    assert clip["faces"] is None and clip["phash"] is None  # Cloudinary analyses no video
    poster = requests.get(clip["thumbnail_url"], timeout=30)
    assert poster.headers["Content-Type"] == "image/jpeg"
    assert PILImage.open(io.BytesIO(poster.content)).size == (256, 256)
    preview = requests.get(clip["preview_url"], headers={"Range": "bytes=0-99"}, timeout=30)
    assert preview.status_code == 206 and preview.headers["Content-Type"] == "video/mp4"  # seekable in a player

    photo = images[heic["public_id"]]
    assert photo["status"] == "ready", photo["error"]
    assert (photo["resource_type"], photo["original_filename"], photo["format"]) == ("image", "astronaut", "heic")
    assert photo["phash"] and photo["colors"] and photo["faces"] is not None  # analysed like a JPEG
    thumb = requests.get(photo["thumbnail_url"], timeout=30)
    assert thumb.headers["Content-Type"] == "image/jpeg"

    # The same video again: Cloudinary stores a second asset; the album does not.
    again = stack.upload(form, MEDIA / "clip.mp4")
    assert again["public_id"] != video["public_id"] and again["etag"] == video["etag"]

    def copy_destroyed() -> bool:
        with db.session_scope() as session:
            row = session.query(Image).filter_by(public_id=again["public_id"]).one_or_none()
            return row is not None and row.destroyed_at is not None and row.duplicate_of == clip["id"]

    wait_for(copy_destroyed, 60, what="the re-sent copy recorded as a duplicate and destroyed")
    stack.upload_done(album)
    assert sorted(i["public_id"] for i in stack.images(album)) == sorted([video["public_id"], heic["public_id"]])
    wait_for(lambda: stack.album(album)["images_count"] == 2, 30, what="the count: 2, not 3")
    gone = requests.get(again["url"], timeout=30)
    assert gone.status_code == 404  # its asset destroyed on Cloudinary
