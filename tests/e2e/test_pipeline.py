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

    # astronaut.jpg and astronaut-small.jpg are one near-duplicate group, found by the workers'
    # album.index_duplicates (it runs beside the thumbnails, so it may finish just after "ready").
    pair = {uploads["astronaut.jpg"]["public_id"], uploads["astronaut-small.jpg"]["public_id"]}

    def grouped() -> list[set[str]] | None:
        groups = stack.api("GET", f"/api/v1/albums/{album}/duplicates", album).json()["groups"]
        sets = [{m["public_id"] for m in g} for g in groups]
        return sets if pair in sets else None

    assert wait_for(grouped, 10, what="the near-duplicate group") == [pair]

    # Count and cover, exact once the debounced recount has run.
    def counted() -> dict | None:
        body = stack.album(album)
        return body if body["images_count"] == len(PHOTOS) and len(body["thumbnails"]) == 4 else None

    body = wait_for(counted, 30, what="images_count and cover")
    assert all(t["url"] and t["width"] == 256 for t in body["thumbnails"])

    # The notifications carried the analysis: not one Admin API resource call for these photos.
    after = stack.emulator.stats()
    assert after["calls"]["admin_resource"] == before["calls"]["admin_resource"]


def _count_rows(album: str) -> int:
    from sqlalchemy import func, select

    from common import db
    from common.models import Image

    with db.session_scope() as session:
        return session.scalar(select(func.count()).select_from(Image).where(Image.album_id == album)) or 0


def test_each_notification_delivered_three_times_makes_one_image(stack: Stack, album: str) -> None:
    stack.emulator.set_faults(duplicate_notifications=1.0, duplicate_copies=3)
    before = stack.emulator.stats()["notifications"]["sent"]
    form = stack.upload_done(album)["upload_form"]
    photos = PHOTOS[:3]
    for photo in photos:
        stack.upload(form, photo)
    wait_for(lambda: stack.emulator.stats()["notifications"]["sent"] - before >= 3 * len(photos), 30,
             what="three deliveries of each notification")
    images = stack.wait_all_ready(album, len(photos))
    assert len(images) == len(photos)
    assert _count_rows(album) == len(photos)
    wait_for(lambda: stack.album(album)["images_count"] == len(photos), 20, what="exact count")


def test_dropped_notifications_are_brought_in_by_upload_done_reconciliation(stack: Stack, album: str) -> None:
    stack.emulator.set_faults(drop_notifications=1.0)
    dropped = stack.emulator.stats()["notifications"]["dropped"]
    form = stack.upload_done(album)["upload_form"]
    uploads = [stack.upload(form, photo) for photo in PHOTOS]
    # No webhook came; the client says upload_done, whose reconcile lists the album's tag.
    assert stack.emulator.stats()["notifications"]["dropped"] - dropped == len(PHOTOS)
    stack.upload_done(album)
    images = stack.wait_all_ready(album, len(PHOTOS))
    assert {i["public_id"] for i in images} == {u["public_id"] for u in uploads}
    assert all(i["status"] == "ready" and i["phash"] for i in images)
    status = stack.api("GET", f"/api/v1/albums/{album}/status", album).json()
    assert status["last_reconciled_at"] is not None
    wait_for(lambda: stack.album(album)["images_count"] == len(PHOTOS), 20, what="exact count")


def test_a_tiny_admin_budget_is_waited_for_never_overspent(stack: Stack) -> None:
    # No notification arrives, so four albums each need a reconcile listing: the Admin API allows
    # 3 calls per 6 s and one is kept in reserve, so the listings wait for the next windows.
    stack.emulator.set_faults(latency_ms=0, error_rate=0, drop_notifications=1.0, duplicate_notifications=0,
                              admin_budget=3, admin_window_seconds=6)
    stack.emulator.reset()
    albums = [stack.new_album() for _ in range(4)]
    for album in albums:
        form = stack.upload_done(album)["upload_form"]
        stack.upload(form, PHOTOS[0])
    for album in albums:
        stack.upload_done(album)
    for album in albums:
        images = stack.wait_all_ready(album, 1, timeout=120)
        assert [i["status"] for i in images] == ["ready"] and images[0]["phash"]
    stats = stack.emulator.stats()
    assert stats["rate_limited"] == 0  # waited for the reset: never a call past the budget
    assert stats["calls"]["admin_resources_by_tag"] >= len(albums)
    # The analysis of photos no webhook brought comes from `explicit`, which is not rate-limited.
    assert stats["calls"]["admin_resource"] == 0


def test_a_worker_killed_mid_task_loses_nothing(stack: Stack, album: str) -> None:
    import signal

    for proc in list(stack.workers):
        stack.stop_worker(proc)
    victim = stack.start_worker("victim")
    try:
        # Every Cloudinary call now takes 4 s: generate_thumbnails will be in flight when the worker dies.
        stack.emulator.set_faults(latency_ms=4000)
        form = stack.upload_done(album)["upload_form"]
        upload = stack.upload(form, PHOTOS[0])
        wait_for(lambda: _count_rows(album) == 1, 30, what="the ingest")
        wait_for(lambda: stack.worker_log_lines("album.generate_thumbnails") > 0, 30, what="generate_thumbnails to start")
        stack.stop_worker(victim, signal.SIGKILL)
        stack.emulator.set_faults(latency_ms=0)
        assert stack.images(album)[0]["status"] != "ready"
    finally:
        stack.start_worker("rescuer")
    # The killed worker never acked: Redis hands the message to the new worker after the
    # visibility timeout, and the photo ends ready, once.
    images = stack.wait_all_ready(album, 1, timeout=90)
    assert [(i["public_id"], i["status"]) for i in images] == [(upload["public_id"], "ready")]
    assert _count_rows(album) == 1


def _tiny_jpeg(seed: int) -> bytes:
    import random

    rnd = random.Random(seed)
    img = PILImage.new("RGB", (48, 32), tuple(rnd.randrange(256) for _ in range(3)))
    for _ in range(20):
        x, y = rnd.randrange(48), rnd.randrange(32)
        img.putpixel((x, y), tuple(rnd.randrange(256) for _ in range(3)))
    out = io.BytesIO()
    img.save(out, "JPEG")
    return out.getvalue()


def test_a_burst_of_200_uploads_counts_exactly_with_few_recounts(stack: Stack, album: str, tmp_path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    n = 200
    files = []
    for i in range(n):
        path = tmp_path / f"burst-{i}.jpg"
        path.write_bytes(_tiny_jpeg(i))
        files.append(path)
    form = stack.upload_done(album)["upload_form"]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: stack.upload(form, p), files))
    stack.wait_all_ready(album, n, timeout=240)
    body = wait_for(lambda: (b := stack.album(album))["images_count"] == n and b, 60, what="the exact count")
    assert body["images_count"] == n
    # Each recount run logs one line with the album id and the count it found.
    recounts = stack.worker_log_lines(f'"album_id": "{album}", "images_count"')
    assert 0 < recounts < n // 4, recounts


def test_the_request_id_follows_upload_done_into_its_tasks_logs(stack: Stack, album: str) -> None:
    request_id = f"e2e-trace-{album}"
    response = stack.api("POST", f"/api/v1/albums/{album}/upload_done", album, headers={"X-Request-Id": request_id})
    assert response.headers["X-Request-Id"] == request_id
    # The recount it scheduled logs a structured line carrying the same request id.
    wait_for(lambda: stack.worker_log_lines(f'"request_id": "{request_id}", "album_id": "{album}", "images_count"'), 30,
             what="the recount's log line with the request id")


def test_delete_and_reprocess(stack: Stack, album: str) -> None:
    form = stack.upload_done(album)["upload_form"]
    uploads = [stack.upload(form, photo) for photo in PHOTOS[:2]]
    images = stack.wait_all_ready(album, 2)
    before = stack.emulator.stats()

    # manage: delete one photo; it leaves the album at once, and Cloudinary's copy goes in a task.
    victim = next(i for i in images if i["public_id"] == uploads[0]["public_id"])
    response = stack.api("DELETE", f"/api/v1/albums/{album}/images/{victim['id']}", album)
    assert response.status_code == 202
    assert [i["public_id"] for i in stack.images(album)] == [uploads[1]["public_id"]]
    wait_for(lambda: stack.emulator.stats()["calls"]["destroy"] > before["calls"]["destroy"], 30, what="the destroy")

    def destroyed() -> bool:
        from common import db
        from common.models import Image

        with db.session_scope() as session:
            return session.get(Image, victim["id"]).destroyed_at is not None

    wait_for(destroyed, 30, what="the destroy to be recorded")
    wait_for(lambda: stack.album(album)["images_count"] == 1, 30, what="the recount after delete")
    reader = stack.token(album, ("read",))
    refused = requests.delete(f"{stack.web_url}/api/v1/albums/{album}/images/{victim['id']}",
                              headers={"Authorization": f"Bearer {reader}"}, timeout=10)
    assert refused.status_code == 403

    # manage: reprocess everything; the metadata comes from `explicit` this time.
    explicit_before = stack.emulator.stats()["calls"]["explicit"]
    response = stack.api("POST", f"/api/v1/albums/{album}/reprocess", album, json={"mode": "all"})
    assert response.status_code == 202 and response.json()["images"] == 1
    wait_for(lambda: stack.emulator.stats()["calls"]["explicit"] >= explicit_before + 2, 30,
             what="the analysis and thumbnails calls")
    assert stack.wait_all_ready(album, 1)[0]["status"] == "ready"


def test_upload_done_recount_on_a_real_worker_fixes_a_stale_count(stack: Stack, album: str) -> None:
    """upload_done enqueues the album's recount; a real worker recounts from the database."""
    from common import db
    from common.models import Album, Image

    with db.session_scope() as session:
        for i in range(3):
            session.add(Image(album_id=album, public_id=f"{album}/stale-{i}", metadata_status="done",
                              thumbnails_status="done", thumbnail_url=f"http://example.invalid/{i}.jpg"))
        session.get(Album, album).images_count = 0  # stale
    assert stack.upload_done(album)["images_count"] == 0  # answered at once, before the worker ran
    body = wait_for(lambda: (b := stack.album(album))["images_count"] == 3 and b, 30, what="the recount")
    assert [t["public_id"] for t in body["thumbnails"]] == [f"{album}/stale-{i}" for i in (2, 1, 0)]


def test_a_redis_restarted_empty_loses_no_photo(stack: Stack, album: str, redis_url: str) -> None:
    """Webhooks were acknowledged and their ingest tasks queued, then Redis came back empty (no
    persistence): the queue forgot them. Heal notices the new Redis and reconciles the album's
    tag, without the client saying upload_done again."""
    import redis

    for proc in list(stack.workers):
        stack.stop_worker(proc)
    try:
        form = stack.upload_done(album)["upload_form"]
        before = stack.emulator.stats()["notifications"]["sent"]
        uploads = [stack.upload(form, photo) for photo in PHOTOS[:3]]
        wait_for(lambda: stack.emulator.stats()["notifications"]["sent"] - before >= 3, 30, what="the webhooks")
        r = redis.Redis.from_url(redis_url)
        assert r.llen("fast") >= 3  # acknowledged, queued, not yet run
        r.flushdb()  # what a restart without persistence leaves
    finally:
        stack.start_worker("after-restart")
    images = stack.wait_all_ready(album, 3)
    assert sorted(i["public_id"] for i in images) == sorted(u["public_id"] for u in uploads)
    assert all(i["status"] == "ready" for i in images)
