"""Videos through the tasks, on the emulator over HTTP with the official SDK (issue 14): a
reconcile finds a video whose webhook was lost (one more Admin call, only for albums with
videos), the thumbnails stage asks for a poster frame and a playable MP4 in the background
(``eager_async``) and the eager notification stores them, a destroy names the video's resource
type. The task bodies run in-process, as a worker would run them."""
from __future__ import annotations

import io
import json
from pathlib import Path

import cloudinary.uploader
import pytest
import requests
from PIL import Image as PILImage

from cloudinary_emulator.testing import NotificationReceiver
from common import cloudinary_client, db
from common.models import Album, Image
from tasks import pipeline as tasks
from tests.conftest import SEED_ALBUM
# The emulator fixture and the reconcile driver are the Admin-cost test's: the same setting.
from tests.tasks.test_reconcile_cost import _admin_calls, _reconcile_to_the_end, emulator  # noqa: F401

MEDIA = Path(__file__).resolve().parent.parent / "fixtures" / "media"


def _upload_video(public_id: str) -> dict:
    cloudinary_client.ensure_configured(tasks.get_settings())
    return cloudinary.uploader.upload(str(MEDIA / "clip.mp4"), resource_type="video", type="authenticated",
                                      public_id=public_id, tags=[SEED_ALBUM])


def test_reconcile_lists_videos_only_for_albums_with_videos_and_then_finds_a_lost_one(seed_album, emulator,
                                                                                      monkeypatch):
    _upload_video("lost/clip")  # uploaded, its webhook never came
    before = _admin_calls(emulator)
    _reconcile_to_the_end(SEED_ALBUM, full=True)
    assert _admin_calls(emulator) - before == 1  # an album without videos: the images' listing only
    with db.session_scope() as session:
        assert session.query(Image).filter_by(public_id="lost/clip").count() == 0
        session.get(Album, SEED_ALBUM).expects_videos = True  # upload_done?videos=1, or a video's webhook

    before = _admin_calls(emulator)
    _reconcile_to_the_end(SEED_ALBUM, full=True)
    assert _admin_calls(emulator) - before == 2  # images, then videos
    with db.session_scope() as session:
        image = session.query(Image).filter_by(public_id="lost/clip").one()
        assert image.resource_type == "video" and image.metadata_status == "pending"
        image_id = image.id

    tasks.fetch_metadata.run(image_id)  # the listing has no duration: explicit on the video gives it
    # A video's poster and preview are made in the background; the eager notification that
    # ends them goes to the webhook (a receiver here), which hands it to record_eager.
    settings = tasks.get_settings()
    with NotificationReceiver() as receiver:
        base = receiver.url.rsplit("/", 1)[0]
        monkeypatch.setattr(tasks, "get_settings", lambda: settings.with_overrides(public_url=base))
        tasks.generate_thumbnails.run(image_id)
        with db.session_scope() as session:
            assert session.get(Image, image_id).thumbnails_status == "pending"  # until the notification
        [(headers, body)] = receiver.wait_for(1, timeout=30)
    payload = json.loads(body)
    assert payload["notification_type"] == "eager" and payload["public_id"] == "lost/clip"
    assert {"X-Cld-Timestamp", "X-Cld-Signature"} <= set(headers)
    tasks.record_eager.run(SEED_ALBUM, payload)
    with db.session_scope() as session:
        image = session.get(Image, image_id)
        assert image.status == "ready" and image.duration == pytest.approx(3.0, abs=0.05)
        thumbnail_url, preview_url = image.thumbnail_url, image.preview_url
    assert "/video/authenticated/" in thumbnail_url and "so_auto" in thumbnail_url
    poster = requests.get(thumbnail_url, timeout=30)
    assert poster.status_code == 200 and poster.headers["Content-Type"] == "image/jpeg"
    assert PILImage.open(io.BytesIO(poster.content)).size == (256, 256)
    preview = requests.get(preview_url, timeout=30)
    assert preview.status_code == 200 and preview.headers["Content-Type"] == "video/mp4"

    with db.session_scope() as session:
        session.get(Image, image_id).deleted_at = tasks.utcnow()
    tasks.destroy_image.run(image_id)
    with db.session_scope() as session:
        assert session.get(Image, image_id).destroyed_at is not None
    assert requests.get(preview_url, timeout=30).status_code == 404  # gone from Cloudinary too


def test_a_resent_photo_whose_webhook_was_lost_is_dropped_when_its_metadata_comes(seed_album, emulator):
    cloudinary_client.ensure_configured(tasks.get_settings())
    photo = Path(__file__).resolve().parent.parent / "fixtures" / "photos" / "coffee.jpg"
    first = cloudinary.uploader.upload(str(photo), type="authenticated", tags=[SEED_ALBUM], colors=True, faces=True,
                                       phash=True, image_metadata=True)
    tasks.ingest.run(SEED_ALBUM, first)  # its webhook came
    again = cloudinary.uploader.upload(str(photo), type="authenticated", tags=[SEED_ALBUM])  # this one's never did
    _reconcile_to_the_end(SEED_ALBUM, full=True)
    with db.session_scope() as session:
        copy = session.query(Image).filter_by(public_id=again["public_id"]).one()
        original_id = session.query(Image).filter_by(public_id=first["public_id"]).one().id
        assert copy.etag is None and copy.deleted_at is None  # the listing does not say its bytes
        copy_id = copy.id
    tasks.fetch_metadata.run(copy_id)  # explicit does: the album has them already
    with db.session_scope() as session:
        copy = session.get(Image, copy_id)
        assert copy.deleted_at is not None and copy.duplicate_of == original_id
    tasks.destroy_image.run(copy_id)
    with db.session_scope() as session:
        assert session.get(Image, copy_id).destroyed_at is not None
        assert session.query(Image).filter(Image.album_id == SEED_ALBUM, Image.deleted_at.is_(None)).count() == 1
