"""The API's side of issue 14: image objects carry the resource type, the original file name,
a video's duration and the etag; ``upload_done?videos=1`` makes reconciles list the album's
videos. Every answer here is also checked against web/openapi.yaml (tests/openapi_contract.py)."""
from __future__ import annotations

import pytest

from common import db
from common.models import Album, Image
from tests.conftest import SEED_ALBUM
from tests.web.test_openapi import app, client, session  # noqa: F401  (the same app and client)


def test_image_objects_carry_the_media_fields_in_the_documented_order(client, seed_album):
    with db.session_scope() as s:
        s.add(Image(album_id=SEED_ALBUM, public_id="v/clip", resource_type="video", duration=3.0,
                    original_filename="holiday", etag="0" * 32, format="mp4", metadata_status="done",
                    thumbnails_status="done", thumbnail_url="http://x/poster.jpg", preview_url="http://x/clip.mp4"))
        s.add(Image(album_id=SEED_ALBUM, public_id="p/photo"))
    body = client.get(f"/api/v1/albums/{SEED_ALBUM}/images", headers=session("read")).get_json()
    video, photo = body["images"]
    keys = list(video)
    assert keys[:4] == ["id", "public_id", "resource_type", "original_filename"]
    assert keys.index("duration") == keys.index("bytes") + 1 and keys.index("etag") == keys.index("duration") + 1
    assert (video["resource_type"], video["duration"], video["original_filename"], video["etag"]) == (
        "video", 3.0, "holiday", "0" * 32)
    assert (video["status"], video["faces"], video["phash"]) == ("ready", None, None)
    assert (photo["resource_type"], photo["duration"], photo["original_filename"]) == ("image", None, None)


def test_upload_done_with_videos_marks_the_album_and_answers_as_the_seed(client, seed_album):
    plain = client.post(f"/api/v1/albums/{SEED_ALBUM}/upload_done", headers=session("image_upload"))
    with db.session_scope() as s:
        assert s.get(Album, SEED_ALBUM).expects_videos is False
    flagged = client.post(f"/api/v1/albums/{SEED_ALBUM}/upload_done?videos=1", headers=session("image_upload"))
    assert flagged.status_code == 200 and list(flagged.get_json()) == list(plain.get_json())
    with db.session_scope() as s:
        assert s.get(Album, SEED_ALBUM).expects_videos is True


@pytest.mark.parametrize("value", ["2", "yes", "", "%C2%B9"])
def test_upload_done_refuses_other_videos_values_and_writes_nothing(client, seed_album, value):
    response = client.post(f"/api/v1/albums/{SEED_ALBUM}/upload_done?videos={value}", headers=session("image_upload"))
    assert response.status_code == 400 and "'videos'" in response.get_json()["error"]["message"]
    with db.session_scope() as s:
        album = s.get(Album, SEED_ALBUM)
        assert album.expects_videos is False and album.reconcile_requested_at is None
