"""What the pipeline still owes, kept in the database: due times, retries with backoff and a
window, re-dispatch of overdue work, stale counts and owed reconciles (real database)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from common import db, pipeline
from common.config import get_settings
from common.models import Album, Image, utcnow
from tests.conftest import SEED_ALBUM

POLICY = pipeline.RetryPolicy(lease=30, window=3600, backoff_max=600)
BARE = {"asset_id": "b" * 32, "public_id": "album/bare", "version": 1, "format": "jpg", "width": 10, "height": 10,
        "created_at": "2026-11-27T10:00:00Z"}


def _ingest() -> int:
    with db.session_scope() as session:
        return pipeline.ingest(session, SEED_ALBUM, BARE, None, "reconcile", POLICY).image_id


def _image(image_id: int) -> Image:
    with db.session_scope() as session:
        return session.get(Image, image_id)


def _shift(image_id: int, **ago: float) -> None:
    """Move the image's times into the past, as if the clock had run on."""
    with db.session_scope() as session:
        image = session.get(Image, image_id)
        for column, seconds in ago.items():
            setattr(image, column, utcnow() - timedelta(seconds=seconds))


def test_a_new_image_is_due_one_lease_from_now_and_nothing_is_due_once_it_is_done(seed_album):
    image_id = _ingest()
    image = _image(image_id)
    due = pipeline._aware(image.due_at) - utcnow()
    assert timedelta(seconds=25) < due <= timedelta(seconds=30)
    with db.session_scope() as session:
        pipeline.store_metadata(session, image_id, {"faces": [], "colors": [], "phash": "0" * 16})
    assert _image(image_id).due_at is not None  # thumbnails still pending
    with db.session_scope() as session:
        pipeline.store_thumbnails(session, image_id, "t", "p", 256, 256)
    image = _image(image_id)
    assert (image.due_at, image.attempts, image.error, image.status) == (None, 0, None, "ready")


def test_overdue_work_is_claimed_once_with_a_lease_that_grows(seed_album):
    image_id = _ingest()
    with db.session_scope() as session:
        assert pipeline.claim_due(session, POLICY) == []  # not due yet
    _shift(image_id, due_at=1)
    with db.session_scope() as session:
        [redrive] = pipeline.claim_due(session, POLICY)
    assert (redrive.image_id, redrive.metadata, redrive.thumbnails) == (image_id, True, True)
    with db.session_scope() as session:
        assert pipeline.claim_due(session, POLICY) == []  # a new lease: not claimed twice
    leases = []
    for _ in range(3):
        _shift(image_id, due_at=1)
        with db.session_scope() as session:
            pipeline.claim_due(session, POLICY)
        leases.append((pipeline._aware(_image(image_id).due_at) - utcnow()).total_seconds())
    assert leases == pytest.approx([45, 67.5, 101.25], abs=1)  # 30 s, then x 1.5 per re-send


def test_a_transient_failure_keeps_its_reason_and_backs_off(seed_album):
    image_id = _ingest()
    with db.session_scope() as session:
        countdown = pipeline.retry_later(session, image_id, "thumbnails", "GeneralError: 500", POLICY, 60)
    assert 1.4 <= countdown <= 2  # first retry: about 2 s, held in the queue
    image = _image(image_id)
    assert image.status == "received" and "GeneralError: 500" in image.error and image.failures == 1
    # Due after the countdown plus a lease: heal leaves the queued retry alone meanwhile.
    assert pipeline._aware(image.due_at) - utcnow() > timedelta(seconds=30)
    with db.session_scope() as session:
        session.get(Image, image_id).failures = 12
    with db.session_scope() as session:
        # A long pause is not held in the queue: heal sends the retry when it is due.
        assert pipeline.retry_later(session, image_id, "thumbnails", "GeneralError: 500", POLICY, 60) is None
    assert 190 < (pipeline._aware(_image(image_id).due_at) - utcnow()).total_seconds() <= 260


def test_re_sends_lengthen_the_lease_but_not_the_pause_after_a_failure(seed_album):
    """A photo whose message was lost twice (a Redis restart, then a killed worker) and whose
    Cloudinary call then fails retries after the first, short pause."""
    image_id = _ingest()
    for _ in range(2):
        _shift(image_id, due_at=1)
        with db.session_scope() as session:
            assert [r.image_id for r in pipeline.claim_due(session, POLICY)] == [image_id]
    with db.session_scope() as session:
        countdown = pipeline.retry_later(session, image_id, "thumbnails", "GeneralError: 500", POLICY, 60)
    assert 1.4 <= countdown <= 2
    assert (_image(image_id).attempts, _image(image_id).failures) == (2, 1)


def test_a_stage_that_finishes_restarts_the_other_stages_backoff(seed_album):
    image_id = _ingest()
    pauses = []
    for _ in range(4):
        with db.session_scope() as session:
            pauses.append(pipeline.retry_later(session, image_id, "thumbnails", "GeneralError: 500", POLICY, 60))
    assert pauses == sorted(pauses) and pauses[-1] > 4.5  # 2, 3, 4.5, 6.75 s (less jitter)
    with db.session_scope() as session:
        pipeline.store_metadata(session, image_id, {"faces": [], "colors": [], "phash": "0" * 16})
    with db.session_scope() as session:
        assert pipeline.retry_later(session, image_id, "thumbnails", "GeneralError: 500", POLICY, 60) <= 2


def test_retrying_ends_with_the_window_and_the_stage_fails_with_the_reason(seed_album):
    image_id = _ingest()
    _shift(image_id, pending_since=3601)
    with db.session_scope() as session:
        assert pipeline.retry_later(session, image_id, "thumbnails", "GeneralError: 503", POLICY, 60) is None
    image = _image(image_id)
    assert image.thumbnails_status == "failed" and image.status == "failed"
    assert "gave up after retrying for 1 h: GeneralError: 503" in image.error
    assert image.due_at is not None  # metadata is still pending: still owed
    _shift(image_id, due_at=1)
    with db.session_scope() as session:
        assert pipeline.claim_due(session, POLICY) == []  # past the window: failed, not re-sent
    image = _image(image_id)
    assert image.metadata_status == "failed" and image.due_at is None


def test_a_broker_loss_makes_everything_pending_due_now(seed_album):
    image_id = _ingest()
    with db.session_scope() as session:
        assert pipeline.make_all_due(session) == 1
    with db.session_scope() as session:
        assert [r.image_id for r in pipeline.claim_due(session, POLICY)] == [image_id]


def test_albums_with_changes_after_their_last_count_need_a_recount(seed_album):
    since = utcnow() - timedelta(minutes=5)
    image_id = _ingest()
    with db.session_scope() as session:
        assert pipeline.albums_needing_recount(session, since) == [SEED_ALBUM]
        pipeline.recount(session, SEED_ALBUM, (256, 256))
    # Counted right after the change: within the clock margin, so counted once more ...
    with db.session_scope() as session:
        assert pipeline.albums_needing_recount(session, since) == [SEED_ALBUM]
    with db.session_scope() as session:
        session.get(Album, SEED_ALBUM).counted_at = utcnow() + timedelta(seconds=10)
    # ... and not after a count well after the last change.
    with db.session_scope() as session:
        assert pipeline.albums_needing_recount(session, since) == []
    with db.session_scope() as session:
        session.execute(update(Image).where(Image.id == image_id).values(updated_at=utcnow() + timedelta(seconds=20)))
    with db.session_scope() as session:
        assert pipeline.albums_needing_recount(session, since) == [SEED_ALBUM]


def test_owed_reconciles_requested_active_and_after_a_broker_loss(seed_album):
    settings = get_settings()
    with db.session_scope() as session:
        assert pipeline.albums_to_reconcile(session, settings) == []
        pipeline.request_reconcile(session, SEED_ALBUM)
    with db.session_scope() as session:
        [target] = pipeline.albums_to_reconcile(session, settings)
    assert target.album_id == SEED_ALBUM and target.full  # never listed: a full walk
    started = utcnow()
    newest = utcnow() - timedelta(minutes=1)
    with db.session_scope() as session:
        assert not pipeline.finish_reconcile(session, SEED_ALBUM, pipeline.ReconcileProgress(started, None, newest, True))
    with db.session_scope() as session:
        assert pipeline.albums_to_reconcile(session, settings) == []  # covered
        album = session.get(Album, SEED_ALBUM)
        album.form_issued_at = utcnow()
    with db.session_scope() as session:
        assert pipeline.albums_to_reconcile(session, settings) == []  # active, but listed just now
        [target] = pipeline.albums_to_reconcile(session, settings, everything_active=True)
    assert target.album_id == SEED_ALBUM and not target.full  # incremental from the watermark
    with db.session_scope() as session:
        session.get(Album, SEED_ALBUM).last_reconciled_at = utcnow() - timedelta(seconds=settings.reconcile_interval + 1)
    with db.session_scope() as session:
        assert [t.album_id for t in pipeline.albums_to_reconcile(session, settings)] == [SEED_ALBUM]
    # A request that came in while a run was going: the run says another is owed.
    with db.session_scope() as session:
        session.get(Album, SEED_ALBUM).reconcile_requested_at = utcnow() + timedelta(seconds=1)
    with db.session_scope() as session:
        assert pipeline.finish_reconcile(session, SEED_ALBUM, pipeline.ReconcileProgress(utcnow()))


def test_the_incremental_listing_stops_below_the_watermark(seed_album):
    with db.session_scope() as session:
        album = session.get(Album, SEED_ALBUM)
        album.reconcile_watermark = pipeline._parse_time("2026-11-27T12:00:00Z")
        page = [{"created_at": "2026-11-27T12:05:00Z"}, {"created_at": "2026-11-27T11:55:00Z"}]
        assert not pipeline.listing_reached_watermark(album, page, overlap=600)  # 11:55 is within the overlap
        page.append({"created_at": "2026-11-27T11:49:59Z"})
        assert pipeline.listing_reached_watermark(album, page, overlap=600)
        album.reconcile_watermark = None
        assert not pipeline.listing_reached_watermark(album, page, overlap=600)  # no watermark: walk it all


def test_forms_issued_are_noted_at_most_once_a_minute(seed_album):
    with db.session_scope() as session:
        album = session.get(Album, SEED_ALBUM)
        assert pipeline.form_issued(album)
        assert not pipeline.form_issued(album)
        album.form_issued_at = utcnow() - timedelta(seconds=61)
        assert pipeline.form_issued(album)


def test_reprocess_is_owed_from_its_commit(seed_album):
    with db.session_scope() as session:
        session.add(Image(album_id=SEED_ALBUM, public_id="bad", metadata_status="done", thumbnails_status="failed",
                          error="thumbnails: x"))
    with db.session_scope() as session:
        [(image_id, meta, thumbs)] = pipeline.reset_for_reprocess(session, SEED_ALBUM, "missing", POLICY)
    image = _image(image_id)
    assert (meta, thumbs, image.error, image.thumbnails_status) == (False, True, None, "pending")
    assert image.due_at is not None and image.pending_since is not None


def test_a_reconcile_resumes_from_its_stored_progress(seed_album):
    with db.session_scope() as session:
        album = session.get(Album, SEED_ALBUM)
        fresh = pipeline.reconcile_progress(album, full=False)
        assert fresh.cursor is None and not fresh.full
        page = [{"created_at": "2026-11-27T12:05:00Z"}, {"created_at": "2026-11-27T11:00:00Z"}]
        done_one = fresh.after(page, "cursor-2")
        assert done_one.cursor == "cursor-2" and done_one.newest == pipeline._parse_time("2026-11-27T12:05:00Z")
        pipeline.save_reconcile_progress(session, SEED_ALBUM, done_one)
    with db.session_scope() as session:
        album = session.get(Album, SEED_ALBUM)
        assert pipeline.reconcile_progress(album, full=False) == done_one  # the next message, or heal, resumes
        restarted = pipeline.reconcile_progress(album, full=True)  # a full walk asked for: from the top
        assert restarted.cursor is None and restarted.full
        assert not pipeline.finish_reconcile(session, SEED_ALBUM, done_one.after([], None))
    with db.session_scope() as session:
        album = session.get(Album, SEED_ALBUM)
        assert album.reconcile_progress is None
        assert pipeline._aware(album.reconcile_watermark) == pipeline._parse_time("2026-11-27T12:05:00Z")


def _ingest_another(n: int) -> int:
    resource = {**BARE, "asset_id": f"{n:032x}", "public_id": f"album/bare-{n}"}
    with db.session_scope() as session:
        return pipeline.ingest(session, SEED_ALBUM, resource, None, "reconcile", POLICY).image_id


def _due_in(image_id: int) -> float:
    return (pipeline._aware(_image(image_id).due_at) - utcnow()).total_seconds()


def test_after_a_cloudinary_outage_every_stage_in_a_retry_pause_is_due_and_no_other(seed_album):
    waiting, leased = _ingest(), _ingest_another(1)
    with db.session_scope() as session:
        session.get(Image, waiting).failures = 9
        session.get(Image, waiting).due_at = utcnow() + timedelta(seconds=300)
    with db.session_scope() as session:
        assert pipeline.make_backoffs_due(session) == 1
    assert _due_in(waiting) <= 0 and _due_in(leased) > 20  # a stage merely leased keeps its lease
    with db.session_scope() as session:
        assert [r.image_id for r in pipeline.claim_due(session, POLICY)] == [waiting]


def test_while_cloudinary_fails_one_retry_is_brought_forward_unless_one_is_due_soon(seed_album):
    soon, late = _ingest(), _ingest_another(1)
    with db.session_scope() as session:
        for image_id, due in ((soon, 240), (late, 300)):
            session.get(Image, image_id).failures = 8
            session.get(Image, image_id).due_at = utcnow() + timedelta(seconds=due)
    with db.session_scope() as session:
        assert pipeline.probe_backoff(session, within=10) == soon
    assert _due_in(soon) <= 0 and _due_in(late) > 200
    with db.session_scope() as session:
        assert pipeline.probe_backoff(session, within=10) is None  # one is due now: no second probe
