"""Videos, raw files, original names and the same bytes sent twice, in the pipeline's logic on
the real database (issue 14)."""
from __future__ import annotations

from common import db, pipeline
from common.models import Album, Image
from tests.conftest import SEED_ALBUM

PHOTO = {
    "asset_id": "b" * 32, "public_id": "album/photo", "version": 1, "format": "jpg", "width": 512, "height": 384,
    "bytes": 1000, "type": "authenticated", "resource_type": "image", "created_at": "2024-06-25T09:25:44Z",
    "etag": "619dfd2901577eb4259f91a2c0e43dac", "original_filename": "IMG_0001",
    "faces": [], "colors": [["#FFFFFF", 50.0]], "predominant": {"google": [["white", 50.0]]},
    "phash": "c2924c5532bddfc8", "image_metadata": {"Make": "Canon"},
}
VIDEO = {
    "asset_id": "c" * 32, "public_id": "album/clip", "version": 2, "format": "mp4", "width": 160, "height": 120,
    "bytes": 87953, "type": "authenticated", "resource_type": "video", "created_at": "2024-06-25T09:26:00Z",
    "etag": "0123456789abcdef0123456789abcdef", "original_filename": "clip", "duration": 3.0, "frame_rate": 10,
}


def _ingest(resource: dict) -> pipeline.IngestResult:
    with db.session_scope() as session:
        result = pipeline.ingest(session, SEED_ALBUM, resource, "u1")
    assert result is not None
    return result


def test_a_video_keeps_its_duration_needs_no_analysis_and_marks_the_album_as_having_videos(seed_album):
    with db.session_scope() as session:
        assert session.get(Album, SEED_ALBUM).expects_videos is False
    result = _ingest(VIDEO)
    assert result.created and not result.needs_metadata and result.needs_thumbnails
    with db.session_scope() as session:
        image = session.get(Image, result.image_id)
        assert (image.resource_type, image.duration, image.original_filename) == ("video", 3.0, "clip")
        assert (image.faces, image.colors, image.phash) == (None, None, None)
        assert image.metadata_status == "done" and image.status == "processing"
        assert session.get(Album, SEED_ALBUM).expects_videos is True


def test_a_listed_video_without_duration_asks_for_its_metadata_and_the_answer_completes_it(seed_album):
    listed = {k: VIDEO[k] for k in ("asset_id", "public_id", "version", "format", "resource_type", "type", "created_at")}
    result = _ingest(listed)
    assert result.needs_metadata
    with db.session_scope() as session:
        pipeline.store_metadata(session, result.image_id, VIDEO)
    with db.session_scope() as session:
        image = session.get(Image, result.image_id)
        assert (image.metadata_status, image.duration, image.etag) == ("done", 3.0, VIDEO["etag"])


def test_a_photo_keeps_its_original_filename_and_etag(seed_album):
    result = _ingest(PHOTO)
    with db.session_scope() as session:
        image = session.get(Image, result.image_id)
        assert (image.resource_type, image.original_filename, image.etag) == ("image", "IMG_0001", PHOTO["etag"])
        assert image.duration is None and image.phash == PHOTO["phash"]


def test_a_raw_file_has_nothing_to_wait_for(seed_album):
    raw = {"asset_id": "d" * 32, "public_id": "album/notes.pdf", "resource_type": "raw", "bytes": 10,
           "type": "authenticated", "etag": "e" * 32}
    result = _ingest(raw)
    assert not result.needs_metadata and not result.needs_thumbnails
    with db.session_scope() as session:
        assert session.get(Image, result.image_id).status == "ready"


def test_the_same_bytes_twice_are_recorded_as_a_duplicate_deleted_on_arrival_and_not_counted(seed_album):
    first = _ingest(PHOTO)
    again = {**PHOTO, "asset_id": "f" * 32, "public_id": "album/photo-again", "original_filename": "IMG_0001 (1)"}
    second = _ingest(again)
    assert second.created and second.duplicate_of == first.image_id
    assert not (second.needs_metadata or second.needs_thumbnails)
    # A repeated notification of the duplicate changes nothing and does not resurrect it.
    repeat = _ingest(again)
    assert repeat.image_id == second.image_id and not repeat.created and repeat.duplicate_of is None
    with db.session_scope() as session:
        duplicate = session.get(Image, second.image_id)
        assert duplicate.deleted_at is not None and duplicate.duplicate_of == first.image_id and duplicate.due_at is None
        album = pipeline.recount(session, SEED_ALBUM, (256, 256))
        assert album.images_count == 1
        assert sum(pipeline.status_counts(session, SEED_ALBUM).values()) == 1
        # The reconcile treats it as known: it never comes back as a new photo.
        assert pipeline.known_public_ids(session, SEED_ALBUM, ["album/photo-again"]) == {"album/photo-again"}


def test_a_copy_found_by_a_reconcile_is_dropped_once_its_metadata_tells_its_etag(seed_album):
    first = _ingest(PHOTO)
    listed = {"asset_id": "9" * 32, "public_id": "album/lost-copy", "format": "jpg", "type": "authenticated"}
    with db.session_scope() as session:
        found = pipeline.ingest(session, SEED_ALBUM, listed, None, "reconcile")
    assert found.created and found.duplicate_of is None and found.needs_metadata  # no etag in a listing
    with db.session_scope() as session:
        pipeline.store_metadata(session, found.image_id, {**PHOTO, **listed})
        assert pipeline.drop_same_bytes_copy(session, found.image_id)
    with db.session_scope() as session:
        copy = session.get(Image, found.image_id)
        assert copy.deleted_at is not None and copy.duplicate_of == first.image_id
        assert not pipeline.drop_same_bytes_copy(session, first.image_id)  # the original stays
        assert session.get(Image, first.image_id).deleted_at is None


def test_with_drop_same_bytes_off_every_upload_is_kept(seed_album):
    first = _ingest(PHOTO)
    with db.session_scope() as session:
        second = pipeline.ingest(session, SEED_ALBUM, {**PHOTO, "asset_id": "f" * 32, "public_id": "album/again"},
                                 "u1", drop_same_bytes=False)
    assert second.duplicate_of is None and second.needs_thumbnails and second.image_id != first.image_id
    with db.session_scope() as session:
        assert pipeline.recount(session, SEED_ALBUM, (256, 256)).images_count == 2


def test_the_same_bytes_after_the_first_was_deleted_are_a_new_photo(seed_album):
    first = _ingest(PHOTO)
    with db.session_scope() as session:
        pipeline.mark_deleted(session, SEED_ALBUM, [PHOTO["public_id"]])
    second = _ingest({**PHOTO, "asset_id": "f" * 32, "public_id": "album/photo-again"})
    assert second.duplicate_of is None and second.image_id != first.image_id


def test_reconcile_progress_walks_videos_after_images_only_for_albums_that_have_them(seed_album):
    with db.session_scope() as session:
        album = session.get(Album, SEED_ALBUM)
        progress = pipeline.reconcile_progress(album, full=True)
        assert progress.resource_type == "image" and progress.next_listing(album) is None
        album.expects_videos = True
        videos = progress.next_listing(album)
        assert videos is not None and (videos.resource_type, videos.cursor, videos.full) == ("video", None, True)
        assert videos.next_listing(album) is None
        # Stored after a page and read back: the run resumes on the videos' listing.
        pipeline.save_reconcile_progress(session, SEED_ALBUM, videos.after([], "cursor-2"))
    with db.session_scope() as session:
        resumed = pipeline.reconcile_progress(session.get(Album, SEED_ALBUM), full=False)
        assert (resumed.resource_type, resumed.cursor) == ("video", "cursor-2")


def test_two_uploads_of_the_same_bytes_arriving_together_keep_one(seed_album):
    """The album row is locked while a new asset's etag is looked up: of two notifications of
    the same bytes ingested at once, exactly one image stays live (PostgreSQL runs them truly
    concurrently; SQLite serialises them)."""
    import threading

    barrier = threading.Barrier(2)
    results: list[pipeline.IngestResult] = []

    def ingest(n: int) -> None:
        resource = {**PHOTO, "asset_id": f"{n}" * 32, "public_id": f"album/copy-{n}"}
        barrier.wait()
        with db.session_scope() as session:
            results.append(pipeline.ingest(session, SEED_ALBUM, resource, "u1"))

    threads = [threading.Thread(target=ingest, args=(n,)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and sorted(r.duplicate_of is None for r in results) == [False, True]
    with db.session_scope() as session:
        live = session.query(Image).filter(Image.album_id == SEED_ALBUM, Image.deleted_at.is_(None)).count()
    assert live == 1
