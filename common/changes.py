"""What changed in an album after a cursor: what ``GET /api/v1/albums/<id>/changes`` answers,
so that a poller pays for the changes, not for the album.

**Change numbers, in commit order.** A timestamp cursor can miss a change: a transaction that
stamps ``updated_at`` first may commit after one that stamped later, and a poll in between moves
the cursor past it. So every ORM flush that changes what ``/images`` shows of an image (or
deletes it) takes the next numbers of its album's counter, ``albums.change_seq``, with an
``UPDATE ... RETURNING`` (``stamp_changes``, an ``after_flush`` hook on every session). That
update holds the album row until the transaction ends (PostgreSQL's row lock; SQLite has a
single writer), so the next number goes to a transaction only after the previous one committed:
numbers become visible in order, and a reader that sees number N sees everything below it. The
cursor is the last number a client has. The cost is one small update per flush that changes
images, and the album's image writes queue for that row between their flush and their commit
(the tasks commit right after).

**The live count, at once.** The same update moves ``albums.images_count`` by the flush's images
that became live (inserted undeleted) or stopped being live (deleted), so the count is right when
the transaction that adds or deletes a photo commits, not when the debounced recount next runs
(up to ``RECOUNT_DEBOUNCE`` later). The album row is locked by that update until commit, so two
transactions' moves never overlap, and a recount (which locks the row first) counts what is
committed. The recount still runs after every change and sets the count from the database: what
moves the count outside an ORM flush is corrected by it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, event, inspect, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from common.models import Album, Image

#: The image columns ``/images`` shows (``common.serializers.image_json``), and the deletion.
VISIBLE = ("public_id", "metadata_status", "thumbnails_status", "width", "height", "format", "bytes", "created_at",
           "faces", "colors", "predominant", "phash", "image_metadata", "thumbnail_url", "preview_url", "error",
           "deleted_at", "resource_type", "duration", "original_filename", "etag")


def _visibly_changed(image: Image) -> bool:
    state = inspect(image)
    return any(state.attrs[name].history.has_changes() for name in VISIBLE)


def _live_change(image: Image, new: bool) -> int:
    """+1 for an image this flush made live, -1 for one it deleted, else 0 (also when the old
    ``deleted_at`` was never loaded: the recount settles that one)."""
    if new:
        return 1 if image.deleted_at is None else 0
    history = inspect(image).attrs.deleted_at.history
    if not history.added or not history.deleted:
        return 0
    return int(history.added[0] is None) - int(history.deleted[0] is None)


@event.listens_for(Session, "after_flush")
def stamp_changes(session: Session, _flush_context: Any) -> None:
    """Give each new or visibly changed image of the flush the next change numbers of its album,
    and move the album's live count by the images the flush made live or deleted.

    After the flush's own writes, so a transaction always locks its image rows before its album
    row (as ``ingest`` does with ``SELECT ... FOR UPDATE``): a bump before the image writes could
    deadlock with it. (``new``, ``dirty`` and the attribute history still show the flush's changes.)"""
    by_album: dict[str, list[Image]] = {}
    live_change: dict[str, int] = {}
    for image in session.new:
        if isinstance(image, Image):
            by_album.setdefault(image.album_id, []).append(image)
            live_change[image.album_id] = live_change.get(image.album_id, 0) + _live_change(image, new=True)
    for image in session.dirty:
        if isinstance(image, Image) and _visibly_changed(image):
            by_album.setdefault(image.album_id, []).append(image)
            live_change[image.album_id] = live_change.get(image.album_id, 0) + _live_change(image, new=False)
    albums, images_table = Album.__table__, Image.__table__
    for album_id in sorted(by_album):  # one order for every transaction: no lock cycle between two
        images = sorted(by_album[album_id], key=lambda img: img.id)
        last = session.execute(
            update(albums).where(albums.c.id == album_id)
            .values(change_seq=albums.c.change_seq + len(images),
                    images_count=albums.c.images_count + live_change[album_id])
            .returning(albums.c.change_seq)
        ).scalar()
        if last is None:
            continue
        numbers = [{"image": image.id, "seq": last - len(images) + 1 + offset} for offset, image in enumerate(images)]
        # Written directly and recorded as loaded: the numbering is no change to flush again.
        session.execute(update(images_table).where(images_table.c.id == bindparam("image"))
                        .values(change_seq=bindparam("seq"), updated_at=images_table.c.updated_at), numbers)
        for image, number in zip(images, numbers):
            set_committed_value(image, "change_seq", number["seq"])


@dataclass(frozen=True)
class Changes:
    images: list[Image]
    deleted: list[int]
    cursor: int
    more: bool


def changes_since(session: Session, album_id: str, since: int | None, limit: int) -> Changes:
    """The album's images changed after change number ``since`` (live ones, and the ids of
    deleted ones), the ``limit`` oldest changes first; the cursor to ask with next. Without
    ``since``, only the current position (one primary-key read)."""
    current = session.scalar(select(Album.change_seq).where(Album.id == album_id)) or 0
    if since is None or since >= current:
        # A cursor from the future (not one this API gave) restarts at the present.
        return Changes([], [], current, False)
    rows = session.scalars(
        select(Image).where(Image.album_id == album_id, Image.change_seq > since)
        .order_by(Image.change_seq).limit(limit + 1)
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    # Numbers up to the last row read are all committed (see the module's docstring), and so
    # are those up to ``current``, read first.
    cursor = rows[-1].change_seq if more else max([current, *(row.change_seq for row in rows)])
    return Changes([row for row in rows if row.deleted_at is None],
                   [row.id for row in rows if row.deleted_at is not None], cursor, more)
