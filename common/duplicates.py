"""Near-duplicate photos, found once when a photo's pHash is stored, not per request.

**Values, not images.** The index is about an album's distinct pHash values: k photos with the
same hash (a burst of identical frames, a re-upload, every all-black photo) are one value, at
distance 0 from each other, so they cost one node and O(1) rows each, not k(k-1)/2 edges.
``image_hashes`` maps each live image with a valid 64-bit pHash to its value; ``album_hashes``
holds each distinct value once (while some image has it); ``hash_edges`` joins two distinct
values within ``MAX_THRESHOLD`` bits, and a value with itself (distance 0) while two or more
images share it. Each end of an edge carries its value's first (smallest) live image, so that
the groups are read from the edges, with one more lookup only for the images of values that
several images share. A new image of a value the album already has costs an insert and at most
the self-edge; only a new value is looked up.

**The lookup.** Each value is cut into four 16-bit bands, each band indexed with the album. Two
hashes within ``MAX_THRESHOLD`` (7) bits differ in at most one bit in at least one band (four
bands each two or more bits apart would be eight bits apart), so a new value's candidates are
the album's values whose band *i* equals band *i* of the new one or one of its 16 one-bit
neighbours: 68 equality lookups, about 50 candidates in an album of 50,000 random hashes. Each
candidate's exact distance is checked; pairs within ``MAX_THRESHOLD`` are stored as edges.

**The groups.** For a threshold ``t`` ≤ ``MAX_THRESHOLD``, the groups are the connected
components (single link: near-duplicates of near-duplicates share a group) of the album's edges
with distance ≤ ``t``, each value's first image joined by its other images: the same groups as
comparing every pair of images (``pipeline.duplicate_groups``), since two images of one value
are within every ``t`` and two images of distinct values are within ``t`` exactly when their
values are.

**Consistency.** ``index_image`` makes the index reflect an image's current pHash and liveness
(run twice, the second run changes nothing); deleting images drops their rows in the same
transaction (``forget``), and a value with them when its last image goes. When a value's first
image goes, its row and edges are re-pointed to the next (as many updates as the value has near
values, not images), so a deleted image cannot split a group or take one with it. Both hold the
album's index lock, so two photos of one album indexed at once on two workers see each other:
PostgreSQL takes a transaction advisory lock per album, SQLite's first statement is a write,
which holds the database's single write lock until commit (and reads after it see everything
committed before).
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from functools import lru_cache
from datetime import datetime
from typing import Any, Callable, Iterable

from sqlalchemy import bindparam, delete, func, insert, select, text, union, update
from sqlalchemy.orm import Session

from common.models import STAGE_DONE, AlbumHash, HashEdge, Image, ImageHash

BANDS = 4
BAND_BITS = 16
_BAND_MASK = (1 << BAND_BITS) - 1
#: The largest threshold the index answers: with 4 bands searched at radius 1, 2 * 4 - 1 bits.
MAX_THRESHOLD = 2 * BANDS - 1
#: ``pg_advisory_xact_lock(class, key)``'s class for album index locks (any fixed int4).
_LOCK_CLASS = 0x0D0B
_PHASH = re.compile(r"[0-9a-fA-F]{1,16}")


def parse_phash(value: Any) -> int | None:
    """The 64-bit hash, or None for what is not 1 to 16 hex digits (such an image is no
    one's duplicate: it is not indexed)."""
    if not isinstance(value, str) or not _PHASH.fullmatch(value):
        return None
    return int(value, 16)


def bands(value: int) -> tuple[int, ...]:
    return tuple((value >> (BAND_BITS * n)) & _BAND_MASK for n in range(BANDS))


def band_neighbourhood(band: int) -> list[int]:
    """The band and every value one bit away from it."""
    return [band] + [band ^ (1 << bit) for bit in range(BAND_BITS)]


def _band_columns() -> list[Any]:
    return [getattr(AlbumHash, f"band{n}") for n in range(BANDS)]


@lru_cache(maxsize=1)
def _neighbour_lookup() -> Any:
    """The album's values with a band equal or one bit away from the new value's (parameters
    ``album_id`` and ``band0``..``band3``, each a list). One SELECT per band, joined by UNION: each
    is a range of its own (album, band) index. (An OR of the four in one WHERE let SQLite's planner
    walk the whole album through one index.) Built once: building it for each photo cost about
    0.4 ms of CPU on the 2-core machine."""
    return union(*(
        select(AlbumHash.phash, AlbumHash.image_id)
        .where(AlbumHash.album_id == bindparam("album_id"), column.in_(bindparam(f"band{n}", expanding=True)))
        for n, column in enumerate(_band_columns())
    ))


def lock_album(session: Session, album_id: str) -> None:
    """Serialize index writes of one album until the transaction ends. Must be the
    transaction's first statement on SQLite (see the module's docstring)."""
    if session.get_bind().dialect.name == "postgresql":
        key = zlib.crc32(album_id.encode()) - 2**31  # int4
        session.execute(text("SELECT pg_advisory_xact_lock(:cls, :key)"), {"cls": _LOCK_CLASS, "key": key})
    else:
        # A write that changes nothing, to take SQLite's write lock now rather than at the first insert.
        session.execute(delete(ImageHash).where(ImageHash.image_id == -1))


def _hex(value: int) -> str:
    return f"{value:016x}"


def _bands_row(value: int) -> dict[str, int]:
    return {f"band{n}": band for n, band in enumerate(bands(value))}


def _edge(album_id: str, end: tuple[str, int], other: tuple[str, int], distance: int) -> dict[str, Any]:
    """The edge between two values, each given as (phash, first image)."""
    (low, low_first), (high, high_first) = (end, other) if end[0] <= other[0] else (other, end)
    return {"album_id": album_id, "phash": low, "other_phash": high, "distance": distance,
            "image_id": low_first, "other_id": high_first}


def _self_edge(album_id: str, phash: str) -> Any:
    return (HashEdge.album_id == album_id) & (HashEdge.phash == phash) & (HashEdge.other_phash == phash)


def _first_images(session: Session, album_id: str, phash: str, count: int) -> list[int]:
    """The value's ``count`` smallest image ids (an index range, whatever its number of images)."""
    return list(session.scalars(
        select(ImageHash.image_id).where(ImageHash.album_id == album_id, ImageHash.phash == phash)
        .order_by(ImageHash.image_id).limit(count)))


def _repoint(session: Session, album_id: str, phash: str, first: int) -> None:
    """The value's first image is now ``first``: in its row and at its end of each of its edges
    (as many as the value has near values, not images)."""
    session.execute(update(AlbumHash).where(AlbumHash.album_id == album_id, AlbumHash.phash == phash)
                    .values(image_id=first))
    session.execute(update(HashEdge).where(HashEdge.album_id == album_id, HashEdge.phash == phash)
                    .values(image_id=first))
    session.execute(update(HashEdge).where(HashEdge.album_id == album_id, HashEdge.other_phash == phash)
                    .values(other_id=first))


def _remove(session: Session, image_ids: list[int]) -> None:
    """The images leave the index; a value none of the album's images has any more leaves with
    its edges, one with a single image left loses its self-edge, one whose first image left is
    re-pointed to the next. Costs follow the values touched, not how many images share them."""
    if not image_ids:
        return
    touched = session.execute(
        select(AlbumHash.album_id, AlbumHash.phash, AlbumHash.image_id)
        .join(ImageHash, (ImageHash.album_id == AlbumHash.album_id) & (ImageHash.phash == AlbumHash.phash))
        .where(ImageHash.image_id.in_(image_ids)).distinct()).all()
    session.execute(delete(ImageHash).where(ImageHash.image_id.in_(image_ids)))
    for album_id, phash, first in touched:
        left = _first_images(session, album_id, phash, 2)
        if not left:  # its edges go with it (foreign keys, on delete cascade)
            session.execute(delete(AlbumHash).where(AlbumHash.album_id == album_id, AlbumHash.phash == phash))
            continue
        if len(left) == 1:
            session.execute(delete(HashEdge).where(_self_edge(album_id, phash)))
        if left[0] != first:
            _repoint(session, album_id, phash, left[0])


def forget(session: Session, album_id: str, image_ids: Iterable[int]) -> None:
    """Deleted images leave the index (and every group) in the transaction that deletes them."""
    ids = list(image_ids)
    if ids:
        lock_album(session, album_id)
        _remove(session, ids)


def _add(session: Session, image_id: int, album_id: str, value: int) -> None:
    """The image joins the index: its value's second image adds the value's self-edge, later
    ones nothing more (but a re-point if one comes first); a value new to the album is looked
    up and joined to its neighbours."""
    phash, row = _hex(value), _bands_row(value)
    session.execute(insert(ImageHash), [{"image_id": image_id, "album_id": album_id, "phash": phash, **row}])
    first = session.scalar(select(AlbumHash.image_id).where(AlbumHash.album_id == album_id, AlbumHash.phash == phash))
    if first is not None:
        if session.scalar(select(HashEdge.distance).where(_self_edge(album_id, phash))) is None:
            session.execute(insert(HashEdge), [_edge(album_id, (phash, first), (phash, first), 0)])
        if image_id < first:  # a reprocessed older photo
            _repoint(session, album_id, phash, image_id)
        return
    edges = []
    neighbourhoods = {f"band{n}": band_neighbourhood(row[f"band{n}"]) for n in range(BANDS)}
    for other, other_first in session.execute(_neighbour_lookup(), {"album_id": album_id, **neighbourhoods}).all():
        distance = (value ^ int(other, 16)).bit_count()
        if distance <= MAX_THRESHOLD:
            edges.append(_edge(album_id, (phash, image_id), (other, other_first), distance))
    session.execute(insert(AlbumHash), [{"album_id": album_id, "phash": phash, **row, "image_id": image_id}])
    if edges:
        session.execute(insert(HashEdge), edges)


def index_image(session: Session, image_id: int) -> bool:
    """Make the index reflect the image as it is now: its current pHash if it is live, else
    nothing. Idempotent; True when it changed something."""
    album_id = session.scalar(select(Image.album_id).where(Image.id == image_id))
    if album_id is None:
        return False
    lock_album(session, album_id)
    # Read again under the lock (Core, not the identity map): a delete or reprocess may have
    # committed meanwhile.
    state = session.execute(select(Image.phash, Image.deleted_at).where(Image.id == image_id)).one()
    value = parse_phash(state.phash) if state.deleted_at is None else None
    indexed = session.scalar(select(ImageHash.phash).where(ImageHash.image_id == image_id))
    if indexed == (_hex(value) if value is not None else None):
        return False
    if indexed is not None:  # (a new photo, the usual case, has nothing to take out)
        _remove(session, [image_id])
    if value is not None:
        _add(session, image_id, album_id, value)
    return True


def index_album(session: Session, album_id: str) -> int:
    """Rebuild the album's index from its images in one pass (the backfill): the same rows
    ``index_image`` keeps, with the candidates looked up in memory. Returns the images
    indexed."""
    lock_album(session, album_id)
    rows = session.execute(
        select(Image.id, Image.phash).where(Image.album_id == album_id, Image.deleted_at.is_(None),
                                             Image.phash.is_not(None))
    ).all()
    session.execute(delete(AlbumHash).where(AlbumHash.album_id == album_id))  # and their edges
    session.execute(delete(ImageHash).where(ImageHash.album_id == album_id))
    images: list[dict[str, Any]] = []
    members: dict[int, list[int]] = {}  # value -> its images, ascending (the rows are not ordered)
    for image_id, phash in rows:
        value = parse_phash(phash)
        if value is not None:
            images.append({"image_id": image_id, "album_id": album_id, "phash": _hex(value), **_bands_row(value)})
            members.setdefault(value, []).append(image_id)
    by_band: list[dict[int, list[tuple[int, int]]]] = [{} for _ in range(BANDS)]
    values, edges = [], []
    for value, ids in members.items():
        phash, row, first = _hex(value), _bands_row(value), min(ids)
        if len(ids) > 1:
            edges.append(_edge(album_id, (phash, first), (phash, first), 0))
        seen: set[int] = set()
        for n in range(BANDS):
            for band in band_neighbourhood(row[f"band{n}"]):
                for other, other_first in by_band[n].get(band, ()):
                    if other not in seen:
                        seen.add(other)
                        distance = (value ^ other).bit_count()
                        if distance <= MAX_THRESHOLD:
                            edges.append(_edge(album_id, (phash, first), (_hex(other), other_first), distance))
        for n in range(BANDS):
            by_band[n].setdefault(row[f"band{n}"], []).append((value, first))
        values.append({"album_id": album_id, "phash": phash, **row, "image_id": first})
    for model, batch in ((ImageHash, images), (AlbumHash, values), (HashEdge, edges)):
        for start in range(0, len(batch), 5000):
            session.execute(insert(model), batch[start:start + 5000])
    return len(images)


def stale_images(session: Session, changed_since: datetime, changed_before: datetime) -> list[int]:
    """Images changed between the two times whose index row does not reflect them (an index
    task lost with its message): live with a pHash not indexed as it is, or deleted and still
    indexed. Only images changed in the window are looked at (an index range), and the database
    returns only those that look stale (what is not a normal lowercase hash is checked here);
    the window ends a little before now so that index tasks still in the queue are not sent
    twice."""
    not_indexed = ImageHash.image_id.is_(None) & Image.phash.is_not(None)
    indexed_otherwise = ImageHash.image_id.is_not(None) & (Image.phash.is_(None) | (ImageHash.phash != Image.phash))
    live_lagging = Image.deleted_at.is_(None) & (not_indexed | indexed_otherwise)
    deleted_indexed = Image.deleted_at.is_not(None) & ImageHash.image_id.is_not(None)
    rows = session.execute(
        select(Image.id, Image.phash, Image.deleted_at, ImageHash.phash)
        .outerjoin(ImageHash, ImageHash.image_id == Image.id)
        .where(Image.updated_at >= changed_since, Image.updated_at < changed_before,
               Image.metadata_status == STAGE_DONE, live_lagging | deleted_indexed)
        .order_by(Image.updated_at)
    ).all()
    stale = []
    for image_id, phash, deleted_at, indexed in rows:
        value = parse_phash(phash) if deleted_at is None else None
        if (f"{value:016x}" if value is not None else None) != indexed:
            stale.append(image_id)
    return stale


def groups(session: Session, album_id: str, threshold: int) -> list[list[int]]:
    """The album's groups for ``threshold``: image ids, each group ascending, groups by their
    smallest id (the order ``pipeline.duplicate_groups`` gives over images in id order)."""
    if not 0 <= threshold <= MAX_THRESHOLD:
        raise ValueError(f"threshold must be 0 to {MAX_THRESHOLD}")
    edges = session.execute(
        select(HashEdge.image_id, HashEdge.other_id)
        .where(HashEdge.album_id == album_id, HashEdge.distance <= threshold)
    ).all()
    parent: dict[int, int] = {}

    def root(i: int) -> int:
        parent.setdefault(i, i)
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(a: int, b: int) -> None:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    for a, b in edges:
        join(a, b)
    # The values several images share (their self-edges, the only edges 0 bits long): each other
    # image joins its value's first.
    self_edge = (HashEdge.album_id == album_id) & (HashEdge.distance == 0)
    firsts = dict(session.execute(select(HashEdge.phash, HashEdge.image_id).where(self_edge)).all())
    if firsts:
        for image_id, phash in session.execute(
                select(ImageHash.image_id, ImageHash.phash)
                .where(ImageHash.album_id == album_id, ImageHash.phash.in_(select(HashEdge.phash).where(self_edge)))):
            join(firsts[phash], image_id)
    members: dict[int, list[int]] = {}
    for i in parent:
        members.setdefault(root(i), []).append(i)
    return sorted((sorted(group) for group in members.values()), key=lambda group: group[0])


@dataclass(frozen=True)
class GroupPage:
    groups: list[list[dict[str, Any]]]
    #: The smallest image id of the page's last group, when more groups follow.
    next_after: int | None


#: What a group shows of each member (the endpoint's keys, in order).
MEMBER_COLUMNS = (Image.id, Image.public_id, Image.phash, Image.thumbnail_url)


def group_page(session: Session, album_id: str, threshold: int, after: int, limit: int,
               member: Callable[[Any], dict[str, Any]]) -> GroupPage:
    """``limit`` groups whose smallest id is above ``after``, each member (a row of
    ``MEMBER_COLUMNS``) as ``member`` shows it."""
    remaining = [group for group in groups(session, album_id, threshold) if group[0] > after]
    page = remaining[:limit]
    ids = [image_id for group in page for image_id in group]
    images = {row.id: row for row in session.execute(
        select(*MEMBER_COLUMNS).where(Image.id.in_(ids), Image.deleted_at.is_(None)))} if ids else {}
    shown = [[member(images[i]) for i in group if i in images] for group in page]
    return GroupPage([group for group in shown if len(group) > 1],
                     page[-1][0] if len(remaining) > limit else None)


def hashed_image_counts(session: Session) -> list[tuple[str, int]]:
    """(album id, live images with a pHash) of every album that has any: the backfill's work."""
    return [(album_id, n) for album_id, n in session.execute(
        select(Image.album_id, func.count())
        .where(Image.deleted_at.is_(None), Image.phash.is_not(None))
        .group_by(Image.album_id).order_by(Image.album_id)
    ).all()]

