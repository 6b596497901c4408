"""The duplicates index (common/duplicates.py) against brute force: on a couple of thousand
generated pHashes with planted near-duplicates, and on clusters of up to hundreds of photos with
the very same pHash, the stored groups equal ``pipeline.duplicate_groups`` (every pair compared)
for every threshold the index answers, after arrivals, deletes (the first photo of a cluster
among them) and reprocessing; k photos with one pHash are O(k) rows; indexing is idempotent and
two photos of one album indexed at once still meet."""
from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest
from sqlalchemy import event, func, select

from common import db, duplicates, pipeline, tokens
from common.models import AlbumHash, HashEdge, Image, ImageHash
from tests.conftest import SEED_ALBUM, SEED_USER, TEST_JWT_SECRET

PHOTOS = 2000


def _flip(value: int, bits: int, rng: random.Random) -> int:
    for bit in rng.sample(range(64), bits):
        value ^= 1 << bit
    return value


def _planted_hashes(rng: random.Random, count: int) -> list[str | None]:
    """Random hashes, a third of them starting clusters: copies a chosen number of bits away
    (0 to MAX_THRESHOLD + 3, so every threshold splits some), some chained off each other
    (single link), some sharing a band exactly while far apart, and a few invalid hashes."""
    hashes: list[str | None] = []
    while len(hashes) < count:
        base = rng.getrandbits(64)
        hashes.append(f"{base:016x}")
        if rng.random() < 0.33:
            current = base
            for _ in range(rng.randint(1, 4)):
                current = _flip(current if rng.random() < 0.5 else base, rng.randint(0, duplicates.MAX_THRESHOLD + 3), rng)
                hashes.append(f"{current:016x}")
        if rng.random() < 0.05:  # same low band, far elsewhere: a candidate that is no duplicate
            hashes.append(f"{(rng.getrandbits(48) << 16) | (base & 0xFFFF):016x}")
        if rng.random() < 0.01:
            hashes.append(rng.choice([None, "zz", "0x12", "f" * 17]))
    rng.shuffle(hashes)
    return hashes[:count]


def _add_images(hashes: list[str | None]) -> list[int]:
    with db.session_scope() as session:
        first = session.query(Image).count()
        images = [Image(album_id=SEED_ALBUM, public_id=f"{SEED_ALBUM}/gen{first + n}", phash=phash,
                        metadata_status="done", thumbnails_status="done") for n, phash in enumerate(hashes)]
        session.add_all(images)
        session.flush()
        return [image.id for image in images]


def _brute_force(threshold: int) -> list[list[int]]:
    with db.session_scope() as session:
        live = session.scalars(select(Image).where(Image.album_id == SEED_ALBUM, Image.deleted_at.is_(None),
                                                   Image.phash.is_not(None)).order_by(Image.id)).all()
        # pipeline.duplicate_groups takes any hex int(..., 16) reads; the index only 64-bit hashes.
        valid = [img for img in live if duplicates.parse_phash(img.phash) is not None]
        return [[img.id for img in group] for group in pipeline.duplicate_groups(valid, threshold)]


def _assert_index_equals_brute_force() -> int:
    planted = 0
    with db.session_scope() as session:
        for threshold in range(duplicates.MAX_THRESHOLD + 1):
            stored = duplicates.groups(session, SEED_ALBUM, threshold)
            expected = _brute_force(threshold)
            assert stored == expected, f"threshold {threshold}"
            planted += len(expected)
    return planted


def _index(image_ids: list[int]) -> list[bool]:
    changed = []
    for image_id in image_ids:
        with db.session_scope() as session:
            changed.append(duplicates.index_image(session, image_id))
    return changed


def _snapshot() -> tuple[set[tuple[Any, ...]], ...]:
    with db.session_scope() as session:
        return tuple({tuple(row) for row in session.execute(select(*columns)).all()} for columns in (
            (ImageHash.image_id, ImageHash.phash), (AlbumHash.album_id, AlbumHash.phash, AlbumHash.image_id),
            (HashEdge.album_id, HashEdge.phash, HashEdge.other_phash, HashEdge.distance, HashEdge.image_id,
             HashEdge.other_id)))


def test_stored_groups_equal_brute_force_through_arrivals_deletes_and_reprocess(seed_album):
    rng = random.Random(16)
    ids = _add_images(_planted_hashes(rng, PHOTOS))
    # The first half was there before the index (the backfill), the rest arrives one by one.
    half = len(ids) // 2
    with db.session_scope() as session:
        duplicates.index_album(session, SEED_ALBUM)
    with db.session_scope() as session:  # the backfill indexed everything hashed; forget the arrivals again
        duplicates.forget(session, SEED_ALBUM, ids[half:])
    assert sum(_index(ids[half:])) >= 0.95 * (len(ids) - half)  # all but the invalid hashes
    planted = _assert_index_equals_brute_force()
    assert planted > 200  # the generator planted many groups across the thresholds
    with db.session_scope() as session:
        assert duplicates.groups(session, SEED_ALBUM, 0) != duplicates.groups(session, SEED_ALBUM, duplicates.MAX_THRESHOLD)

    # Idempotent: the arrivals' tasks delivered again change nothing.
    before = _snapshot()
    assert not any(_index(ids))
    assert _snapshot() == before
    # The backfill of the same album builds the same index as the arrivals did.
    with db.session_scope() as session:
        duplicates.index_album(session, SEED_ALBUM)
    assert _snapshot() == before

    # Deletes (a third of them group members) leave every group at once.
    members = [i for group in _brute_force(duplicates.MAX_THRESHOLD) for i in group]
    doomed = rng.sample(members, 60) + rng.sample(ids, 60)
    with db.session_scope() as session:
        public_ids = session.scalars(select(Image.public_id).where(Image.id.in_(doomed))).all()
        pipeline.mark_deleted(session, SEED_ALBUM, public_ids)
    _assert_index_equals_brute_force()
    assert not any(_index(doomed))  # a late index task of a deleted photo changes nothing

    # Reprocess: new pHashes (into other clusters, far away, invalid), then the index task.
    live = [i for i in ids if i not in set(doomed)]
    changed = rng.sample(live, 150)
    with db.session_scope() as session:
        targets = [duplicates.parse_phash(h) for h in session.scalars(select(Image.phash).where(Image.id.in_(live))).all()]
        targets = [t for t in targets if t is not None]
        for image_id in changed:
            roll = rng.random()
            new = (None if roll < 0.05 else f"{rng.getrandbits(64):016x}" if roll < 0.3
                   else f"{_flip(rng.choice(targets), rng.randint(0, duplicates.MAX_THRESHOLD), rng):016x}")
            session.get(Image, image_id).phash = new
    with db.session_scope() as session:  # before its index task runs, heal sees the lag
        stale = duplicates.stale_images(session, pipeline.utcnow().replace(year=2000), pipeline.utcnow().replace(year=2100))
    assert set(stale) <= set(changed) and len(stale) >= 140
    assert sum(_index(changed)) >= 140
    _assert_index_equals_brute_force()


def _delete(image_ids: list[int]) -> None:
    with db.session_scope() as session:
        public_ids = session.scalars(select(Image.public_id).where(Image.id.in_(image_ids))).all()
        pipeline.mark_deleted(session, SEED_ALBUM, public_ids)


def test_identical_hashes_give_the_groups_of_brute_force_through_deletes_of_their_first_photos(seed_album):
    """Clusters of 2 to 300 photos with one pHash (bursts, blank photos), near-copies of some of
    them a few bits off and singles, arriving in random order after a backfill of a part."""
    rng = random.Random(1616)
    blank = "0" * 16
    bases = [rng.getrandbits(64) for _ in range(12)]
    hashes = [blank] * 300 + [f"{bases[0]:016x}"] * 150
    for base in bases[1:]:
        hashes += [f"{base:016x}"] * rng.randint(2, 40)
        hashes += [f"{_flip(base, rng.randint(1, duplicates.MAX_THRESHOLD + 2), rng):016x}"
                   for _ in range(rng.randint(0, 3))]
    hashes += [f"{_flip(0, 3, rng):016x}"] * 5 + [f"{rng.getrandbits(64):016x}" for _ in range(100)]
    rng.shuffle(hashes)
    ids = _add_images(hashes)
    third = len(ids) // 3
    with db.session_scope() as session:
        duplicates.index_album(session, SEED_ALBUM)
    with db.session_scope() as session:
        duplicates.forget(session, SEED_ALBUM, ids[third:])
    assert all(_index(ids[third:]))
    _assert_index_equals_brute_force()
    before = _snapshot()
    assert not any(_index(ids))
    with db.session_scope() as session:
        duplicates.index_album(session, SEED_ALBUM)
    assert _snapshot() == before

    # The first photo of every cluster (the one an index of representatives would lean on), then
    # all but one of a cluster, then every photo of another.
    by_hash: dict[str, list[int]] = {}
    for image_id, phash in zip(ids, hashes):
        by_hash.setdefault(phash, []).append(image_id)
    clusters = sorted((members for members in by_hash.values() if len(members) > 1), key=len, reverse=True)
    _delete([min(members) for members in clusters])
    _assert_index_equals_brute_force()
    _delete(sorted(clusters[2])[1:-1])
    _delete(sorted(clusters[3])[1:])
    _assert_index_equals_brute_force()
    _delete(clusters[4])
    _assert_index_equals_brute_force()

    # Reprocess: photos move out of the big clusters, into others, and to the blank hash.
    with db.session_scope() as session:
        live = session.scalars(select(Image.id).where(Image.album_id == SEED_ALBUM, Image.deleted_at.is_(None))).all()
        moved = rng.sample(live, 120)
        for image_id in moved:
            session.get(Image, image_id).phash = rng.choice([blank, f"{bases[0]:016x}", f"{rng.getrandbits(64):016x}",
                                                             f"{_flip(bases[5], 2, rng):016x}"])
    _index(moved)
    _assert_index_equals_brute_force()
    assert not any(_index(ids))
    # First images re-pointed through all that, as a rebuild from scratch points them.
    before = _snapshot()
    with db.session_scope() as session:
        duplicates.index_album(session, SEED_ALBUM)
    assert _snapshot() == before


def _album_index_rows() -> int:
    with db.session_scope() as session:
        return sum(session.scalar(select(func.count()).select_from(model)) for model in (ImageHash, AlbumHash, HashEdge))


def test_k_photos_with_one_hash_cost_rows_and_statements_linear_in_k(seed_album):
    k = 300
    ids = _add_images(["0" * 16] * k)
    statements: list[int] = []
    engine = db.get_engine()

    def count(*_: Any) -> None:
        statements[-1] += 1

    event.listen(engine, "before_cursor_execute", count)
    try:
        for image_id in ids:
            statements.append(0)
            with db.session_scope() as session:
                assert duplicates.index_image(session, image_id)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    # k image rows, one value, its self-edge (k(k-1)/2 = 44,850 edges before).
    assert _album_index_rows() <= k + 2
    # The 300th photo costs what the 3rd did: no statement per photo already there.
    assert max(statements[2:]) == min(statements[2:])
    with db.session_scope() as session:
        assert duplicates.groups(session, SEED_ALBUM, 0) == [sorted(ids)]
    _delete(ids[:-1])  # down to one photo: a single is no group, and leaves just its rows
    assert _album_index_rows() == 2
    with db.session_scope() as session:
        assert duplicates.groups(session, SEED_ALBUM, duplicates.MAX_THRESHOLD) == []


def test_two_photos_of_one_album_indexed_at_once_meet(seed_album):
    """Each in its own transaction on its own thread, started together: without the album's
    index lock each would look for the other before the other committed, and miss it."""
    rng = random.Random(7)
    for _ in range(8):
        base = rng.getrandbits(64)
        a, b = _add_images([f"{base:016x}", f"{_flip(base, _ % 7, rng):016x}"])  # 0 bits: the same hash
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def run(image_id: int) -> None:
            try:
                barrier.wait()
                with db.session_scope() as session:
                    duplicates.index_image(session, image_id)
                    time.sleep(0.05)  # widen the window between the lookup and the commit
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(i,)) for i in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        with db.session_scope() as session:
            assert [a, b] in duplicates.groups(session, SEED_ALBUM, 6)


@pytest.fixture
def client(settings):
    from web import create_app

    return create_app(settings).test_client()


def _read() -> dict[str, str]:
    token = tokens.issue_session(SEED_USER, {SEED_ALBUM: ("read",)}, TEST_JWT_SECRET, 3600, now=int(time.time()))
    return {"Authorization": f"Bearer {token}"}


def test_the_endpoint_pages_the_stored_groups(client, seed_album):
    rng = random.Random(3)
    hashes = []
    for _ in range(7):
        base = rng.getrandbits(64)
        hashes += [f"{base:016x}", f"{_flip(base, 2, rng):016x}", f"{_flip(base, 5, rng):016x}", f"{base:016x}"]
    ids = _add_images(hashes)
    _index(ids)
    url = f"/api/v1/albums/{SEED_ALBUM}/duplicates"
    whole = client.get(url, headers=_read()).get_json()
    assert whole["threshold"] == 6 and whole["next_cursor"] is None
    assert [[m["id"] for m in g] for g in whole["groups"]] == _brute_force(6)
    assert list(whole) == ["threshold", "groups", "next_cursor"]
    assert list(whole["groups"][0][0]) == ["id", "public_id", "phash", "thumbnail_url"]
    pages, cursor = [], None
    while True:
        page = client.get(url, query_string={"threshold": 3, "limit": 2, **({"cursor": cursor} if cursor else {})},
                          headers=_read()).get_json()
        pages += page["groups"]
        cursor = page["next_cursor"]
        assert len(page["groups"]) <= 2
        if cursor is None:
            break
    assert [[m["id"] for m in g] for g in pages] == _brute_force(3) and len(pages) == 7
    for bad in ("8", "64", "-1", "x"):
        response = client.get(url, query_string={"threshold": bad}, headers=_read())
        assert response.status_code == 400 and response.get_json()["error"]["code"] == "invalid_parameter"
        assert "'threshold'" in response.get_json()["error"]["message"]


def test_a_default_threshold_the_index_cannot_answer_is_refused():
    from common.config import ConfigError, load_settings

    assert load_settings({"DUPLICATE_THRESHOLD": str(duplicates.MAX_THRESHOLD)}).duplicate_threshold == 7
    with pytest.raises(ConfigError, match="DUPLICATE_THRESHOLD"):
        load_settings({"DUPLICATE_THRESHOLD": str(duplicates.MAX_THRESHOLD + 1)})
