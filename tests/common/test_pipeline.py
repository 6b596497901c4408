"""The pipeline's logic on the real database, without Celery: what the tasks call."""
from __future__ import annotations

from common import db, pipeline
from common.models import Album, Image
from tests.conftest import SEED_ALBUM

RESOURCE = {
    "asset_id": "a" * 32, "public_id": "album/p1", "version": 1, "format": "jpg", "width": 512, "height": 512,
    "bytes": 1000, "type": "authenticated", "created_at": "2024-06-25T09:25:44Z",
    "faces": [[1, 2, 3, 4]], "colors": [["#FFFFFF", 50.0]], "predominant": {"google": [["white", 50.0]]},
    "phash": "c2924c5532bddfc8", "image_metadata": {"Make": "Canon"},
}


def test_ingest_with_analysis_needs_no_admin_call(seed_album):
    with db.session_scope() as session:
        result = pipeline.ingest(session, SEED_ALBUM, RESOURCE, "u1")
    assert result.created and not result.needs_metadata and result.needs_thumbnails
    with db.session_scope() as session:
        image = session.get(Image, result.image_id)
        assert (image.faces, image.phash, image.image_metadata) == ([[1, 2, 3, 4]], "c2924c5532bddfc8", {"Make": "Canon"})
        assert image.status == "processing"


def test_ingest_is_idempotent(seed_album):
    ids = set()
    for _ in range(3):
        with db.session_scope() as session:
            result = pipeline.ingest(session, SEED_ALBUM, RESOURCE, "u1")
            ids.add(result.image_id)
    assert len(ids) == 1
    with db.session_scope() as session:
        assert session.query(Image).count() == 1


def test_ingest_without_analysis_asks_for_metadata_and_a_later_webhook_fills_it(seed_album):
    bare = {k: RESOURCE[k] for k in ("asset_id", "public_id", "version", "format", "width", "height")}
    with db.session_scope() as session:
        first = pipeline.ingest(session, SEED_ALBUM, bare, None, "reconcile")
    assert first.needs_metadata
    with db.session_scope() as session:
        second = pipeline.ingest(session, SEED_ALBUM, RESOURCE, "u1")
    assert second.image_id == first.image_id and not second.needs_metadata and not second.created


def test_ingest_refuses_unknown_albums_and_other_albums_photos(seed_album):
    with db.session_scope() as session:
        assert pipeline.ingest(session, "NOPE", RESOURCE, None) is None
        assert pipeline.ingest(session, SEED_ALBUM, {"asset_id": "x"}, None) is None


def test_recount_counts_live_images_and_covers_the_newest_four_ready(seed_album):
    with db.session_scope() as session:
        for i in range(6):
            session.add(Image(album_id=SEED_ALBUM, public_id=f"p{i}", metadata_status="done",
                              thumbnails_status="done" if i != 5 else "pending", thumbnail_url=f"http://t/{i}"))
        session.add(Image(album_id=SEED_ALBUM, public_id="gone", metadata_status="done", thumbnails_status="done",
                          deleted_at=pipeline.utcnow()))
    with db.session_scope() as session:
        album = pipeline.recount(session, SEED_ALBUM, (256, 256))
        assert album.images_count == 6
        assert [t["public_id"] for t in album.thumbnails] == ["p4", "p3", "p2", "p1"]
        assert album.thumbnails[0] == {"public_id": "p4", "url": "http://t/4", "width": 256, "height": 256}


def test_duplicate_groups_by_hamming_distance():
    def img(pid: str, phash: str) -> Image:
        return Image(public_id=pid, phash=phash)

    images = [img("a", "c2924c5532bddfc8"), img("b", "c2924c5532bddfc9"), img("c", "3d6db3aacd422037"), img("d", "ffffffffffffffff")]
    groups = pipeline.duplicate_groups(images, threshold=6)
    assert [[i.public_id for i in g] for g in groups] == [["a", "b"]]
    assert pipeline.hamming("c2924c5532bddfc8", "c2924c5532bddfc9") == 1
    assert pipeline.duplicate_groups(images, threshold=0) == []


def test_reprocess_missing_leaves_finished_images_alone(seed_album):
    with db.session_scope() as session:
        session.add(Image(album_id=SEED_ALBUM, public_id="ok", metadata_status="done", thumbnails_status="done"))
        session.add(Image(album_id=SEED_ALBUM, public_id="bad", metadata_status="done", thumbnails_status="failed", error="x"))
    with db.session_scope() as session:
        todo = pipeline.reset_for_reprocess(session, SEED_ALBUM, "missing")
    assert [(m, t) for _, m, t in todo] == [(False, True)]


def test_status_counts_group_the_stages_like_each_image_status(seed_album):
    stages = [("pending", "pending"), ("done", "pending"), ("done", "done"), ("done", "done"), ("failed", "done")]
    with db.session_scope() as session:
        for i, (meta, thumbs) in enumerate(stages):
            session.add(Image(album_id=SEED_ALBUM, public_id=f"s{i}", metadata_status=meta, thumbnails_status=thumbs))
        session.add(Image(album_id=SEED_ALBUM, public_id="gone", metadata_status="done", thumbnails_status="done",
                          deleted_at=pipeline.utcnow()))
    with db.session_scope() as session:
        counts = pipeline.status_counts(session, SEED_ALBUM)
        statuses = [img.status for img in session.query(Image).filter(Image.deleted_at.is_(None))]
    assert counts == {"received": 1, "processing": 1, "ready": 2, "failed": 1}
    assert counts == {s: statuses.count(s) for s in counts}


def _count() -> int:
    with db.session_scope() as session:
        return session.get(Album, SEED_ALBUM).images_count


def test_the_count_moves_when_a_photo_is_added_or_deleted_not_at_the_next_recount(seed_album):
    """common/changes.py: the transaction that adds or deletes a photo moves ``images_count``."""
    with db.session_scope() as session:
        first = pipeline.ingest(session, SEED_ALBUM, RESOURCE, "u1")
    assert _count() == 1
    with db.session_scope() as session:  # the same photo again: no new image, no move
        pipeline.ingest(session, SEED_ALBUM, RESOURCE, "u1")
    second = {**RESOURCE, "asset_id": "b" * 32, "public_id": "album/p2", "etag": "e2"}
    with db.session_scope() as session:
        pipeline.ingest(session, SEED_ALBUM, second, "u1")
    assert _count() == 2
    # The same bytes again under another name: recorded deleted on arrival, not counted.
    with db.session_scope() as session:
        copy = pipeline.ingest(session, SEED_ALBUM, {**second, "asset_id": "c" * 32, "public_id": "album/p3"}, "u1")
    assert copy.duplicate_of is not None and _count() == 2
    with db.session_scope() as session:
        pipeline.mark_deleted(session, SEED_ALBUM, ["album/p1"])
        assert session.get(Image, first.image_id).deleted_at is not None
    assert _count() == 1
    with db.session_scope() as session:  # deleting what is already deleted moves nothing
        pipeline.mark_deleted(session, SEED_ALBUM, ["album/p1", "album/p3"])
    assert _count() == 1
    with db.session_scope() as session:
        assert pipeline.recount(session, SEED_ALBUM, (256, 256)).images_count == 1
