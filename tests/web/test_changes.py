"""GET /api/v1/albums/<id>/changes: a poller pays for what changed, never misses a change (even
one committed after a later one began), and an idle poll is one small answer."""
from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest
from sqlalchemy import select

from common import db, pipeline, tokens
from common.models import Image
from common.serializers import image_json
from tests.conftest import SEED_ALBUM, SEED_USER, TEST_JWT_SECRET
from web import create_app

URL = f"/api/v1/albums/{SEED_ALBUM}/changes"


@pytest.fixture
def client(settings):
    return create_app(settings).test_client()


def _auth(album: str = SEED_ALBUM) -> dict[str, str]:
    token = tokens.issue_session(SEED_USER, {album: ("read",)}, TEST_JWT_SECRET, 3600, now=int(time.time()))
    return {"Authorization": f"Bearer {token}"}


def _poll(client, since: str | None = None, **params: Any) -> dict[str, Any]:
    query = {**params, **({"since": since} if since is not None else {})}
    response = client.get(URL, query_string=query, headers=_auth())
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def _ingest(n: int, phash: str | None = None) -> int:
    resource = {"public_id": f"{SEED_ALBUM}/p{n}", "asset_id": f"asset-{n}", "width": 10, "height": 10}
    if phash:
        resource.update({"faces": [], "colors": [], "phash": phash})
    with db.session_scope() as session:
        result = pipeline.ingest(session, SEED_ALBUM, resource, SEED_USER)
        assert result is not None
        return result.image_id


def _images_now() -> dict[int, dict[str, Any]]:
    with db.session_scope() as session:
        rows = session.scalars(select(Image).where(Image.album_id == SEED_ALBUM, Image.deleted_at.is_(None))).all()
        return {img.id: image_json(img) for img in rows}


class Follower:
    """A poller's copy of the album, kept from /changes only."""

    def __init__(self, client) -> None:
        self.client = client
        self.images: dict[int, dict[str, Any]] = {}
        self.cursor = _poll(client)["cursor"]
        self.requests = 0

    def catch_up(self, limit: int = 200) -> None:
        while True:
            body = _poll(self.client, self.cursor, limit=limit)
            self.requests += 1
            for image in body["images"]:
                self.images[image["id"]] = image
            for image_id in body["deleted"]:
                self.images.pop(image_id, None)
            self.cursor = body["cursor"]
            if not body["more"]:
                return


def test_without_since_the_current_cursor_and_an_idle_poll_is_one_small_answer(client, seed_album):
    first = client.get(URL, headers=_auth())
    body = first.get_json()
    assert list(body) == ["images", "deleted", "cursor", "more"]
    assert (body["images"], body["deleted"], body["more"]) == ([], [], False)
    idle = client.get(URL, query_string={"since": body["cursor"]}, headers=_auth())
    assert idle.get_json() == body
    assert len(idle.get_data()) < 80  # a constant few dozen bytes, whatever the album's size
    assert "X-token" in idle.headers


def test_new_updated_and_deleted_images_come_once_each_as_images_shows_them(client, seed_album):
    follower = Follower(client)
    ids = [_ingest(n) for n in range(5)]
    follower.catch_up()
    assert follower.images == _images_now() and set(follower.images) == set(ids)

    with db.session_scope() as session:  # analysis, thumbnails twice, a deletion, a failure
        pipeline.store_metadata(session, ids[0], {"faces": [], "colors": [], "phash": "f" * 16})
    with db.session_scope() as session:
        pipeline.store_thumbnails(session, ids[1], "http://t/1", "http://p/1", 256, 256)
    with db.session_scope() as session:
        pipeline.store_thumbnails(session, ids[1], "http://t/1b", "http://p/1b", 256, 256)
    with db.session_scope() as session:
        pipeline.mark_deleted(session, SEED_ALBUM, [f"{SEED_ALBUM}/p2"])
    with db.session_scope() as session:
        pipeline.mark_failed(session, ids[3], "metadata", "gone")
    body = _poll(client, follower.cursor)
    assert [img["id"] for img in body["images"]] == [ids[0], ids[1], ids[3]]  # in change order, once each
    assert body["deleted"] == [ids[2]] and body["more"] is False
    assert body["images"][1]["thumbnail_url"] == "http://t/1b"
    follower.catch_up()
    assert follower.images == _images_now()

    # A write that changes nothing /images shows (heal's lease bookkeeping) is no change.
    with db.session_scope() as session:
        session.get(Image, ids[4]).attempts = 3
    assert _poll(client, follower.cursor)["images"] == []


def test_limit_pages_the_changes_with_more(client, seed_album):
    follower = Follower(client)
    for n in range(7):
        _ingest(n)
    first = _poll(client, follower.cursor, limit=3)
    assert len(first["images"]) == 3 and first["more"] is True
    follower.catch_up(limit=3)
    assert follower.requests == 3 and follower.images == _images_now()


def test_bad_cursors_and_limits_are_400_and_a_future_cursor_restarts_at_the_present(client, seed_album):
    for query, field in (({"since": "abc"}, "since"), ({"since": "MTI="}, "since"), ({"limit": "0"}, "limit"),
                         ({"limit": "201"}, "limit")):
        response = client.get(URL, query_string=query, headers=_auth())
        assert response.status_code == 400, query
        assert response.get_json()["error"]["code"] == "invalid_parameter"
        assert f"'{field}'" in response.get_json()["error"]["message"]
    present = _poll(client)["cursor"]
    assert _poll(client, "OTk5OTk5")["cursor"] == present  # base64 of 999999
    assert client.get(URL, headers=_auth("OTHER")).status_code == 403
    assert client.get(URL).status_code == 401


def test_a_change_that_commits_late_is_not_skipped(client, seed_album):
    """The timestamp trap: B stamps its change after A did, and would commit first. With change
    numbers, B's flush waits for A's commit, so a poll while A is open sees neither, and after
    both, both — in the order they committed."""
    a, b = _ingest(1), _ingest(2)
    follower = Follower(client)
    a_flushed, b_done = threading.Event(), threading.Event()
    order: list[str] = []

    def writer_a() -> None:
        with db.session_scope() as session:
            session.get(Image, a).error = "a"
            session.flush()  # takes its change number and holds the album's counter
            a_flushed.set()
            time.sleep(0.6)
            order.append("a")

    def writer_b() -> None:
        a_flushed.wait()
        with db.session_scope() as session:
            session.get(Image, b).error = "b"
        order.append("b")
        b_done.set()

    threads = [threading.Thread(target=writer_a), threading.Thread(target=writer_b)]
    for t in threads:
        t.start()
    a_flushed.wait()
    time.sleep(0.2)
    assert _poll(client, follower.cursor)["images"] == []  # A uncommitted; B waits behind it
    assert not b_done.is_set()
    for t in threads:
        t.join()
    assert order == ["a", "b"]
    follower.catch_up()
    assert {follower.images[a]["error"], follower.images[b]["error"]} == {"a", "b"}


def test_a_poller_following_concurrent_writers_misses_nothing(client, seed_album):
    """Four writers ingest, analyse, thumbnail and delete photos, each transaction pausing
    between its flush and its commit; a poller follows /changes meanwhile. Its copy, built from
    the changes alone, equals the album."""
    follower = Follower(client)
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        rng = random.Random(w)
        try:
            for k in range(25):
                n = w * 1000 + k
                image_id = _ingest(n)
                with db.session_scope() as session:
                    pipeline.store_thumbnails(session, image_id, f"http://t/{n}", f"http://p/{n}", 256, 256)
                    session.flush()
                    time.sleep(rng.uniform(0, 0.01))
                if rng.random() < 0.3:
                    with db.session_scope() as session:
                        pipeline.mark_deleted(session, SEED_ALBUM, [f"{SEED_ALBUM}/p{n}"])
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    def poller() -> None:
        while not stop.is_set():
            follower.catch_up(limit=7)

    writers = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    polling = threading.Thread(target=poller)
    polling.start()
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    polling.join()
    assert errors == []
    follower.catch_up()
    assert follower.images == _images_now()
    assert len(follower.images) > 40


def test_a_locked_image_write_and_a_delete_of_it_do_not_deadlock_on_the_album_counter(seed_album):
    """ingest locks the image row (SELECT ... FOR UPDATE) and then takes the album's number; a
    delete writes the image row, then takes the number. Numbers are taken after the flush's own
    writes, so both lock the image before the album and the second simply waits for the first."""
    image_id = _ingest(1)
    locked = threading.Event()
    errors: list[BaseException] = []

    def redelivered_ingest() -> None:
        try:
            with db.session_scope() as session:
                image = pipeline.find_image(session, {"public_id": f"{SEED_ALBUM}/p1"})  # FOR UPDATE
                locked.set()
                time.sleep(0.4)  # the delete now waits on this row
                image.error = "seen twice"
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    def delete() -> None:
        locked.wait()
        try:
            with db.session_scope() as session:
                pipeline.mark_deleted(session, SEED_ALBUM, [f"{SEED_ALBUM}/p1"])
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=redelivered_ingest), threading.Thread(target=delete)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    with db.session_scope() as session:
        image = session.get(Image, image_id)
        assert image.deleted_at is not None and image.error == "seen twice"
