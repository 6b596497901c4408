"""Assets on disk: original and derived files plus a small SQLite index.

File names are SHA-256 digests of ``resource_type/type/public_id`` (and of the transformation for
derived files), so no public_id can steer a write outside the data directory, and folders such
as ``album/photo1`` need no directories of their own.

Listings are keyset-paged on ``(created_at, seq)``: ``seq`` grows with every write of an asset
(an overwrite takes a new one), so the order is the upload order, strictly, and a page boundary
stays valid while assets are added or removed.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from cloudinary_emulator.analysis import ImageInfo

SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS assets (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    resource_type TEXT NOT NULL,
    type TEXT NOT NULL,
    public_id TEXT NOT NULL,
    asset_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    version_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    original_filename TEXT,
    file_name TEXT NOT NULL,
    info TEXT NOT NULL,
    extra TEXT NOT NULL DEFAULT '{}',
    UNIQUE (resource_type, type, public_id)
);
CREATE INDEX IF NOT EXISTS assets_by_created ON assets (resource_type, type, created_at, seq);
CREATE INDEX IF NOT EXISTS assets_by_created_any_type ON assets (resource_type, created_at, seq);
CREATE INDEX IF NOT EXISTS assets_by_file ON assets (file_name);
CREATE TABLE IF NOT EXISTS tags (
    seq INTEGER NOT NULL,
    tag TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (seq, tag)
);
CREATE INDEX IF NOT EXISTS tags_by_created ON tags (tag, resource_type, created_at, seq);
CREATE TABLE IF NOT EXISTS derived (
    key TEXT PRIMARY KEY,
    asset_seq INTEGER NOT NULL,
    transformation TEXT NOT NULL,
    format TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    file_name TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS derived_by_asset ON derived (asset_seq);
CREATE TABLE IF NOT EXISTS presets (
    name TEXT PRIMARY KEY,
    unsigned INTEGER NOT NULL,
    settings TEXT NOT NULL
);
"""

# Data dirs written before resource types existed (schema 0): same rows, image only.
MIGRATE_FROM_0 = """
ALTER TABLE assets RENAME TO assets_v0;
ALTER TABLE tags RENAME TO tags_v0;
DROP TABLE derived;
DROP INDEX IF EXISTS tags_by_tag;
DROP INDEX IF EXISTS derived_by_asset;
""" + SCHEMA + """
INSERT INTO assets (seq, resource_type, type, public_id, asset_id, version, version_id, created_at,
                    original_filename, file_name, info)
    SELECT seq, 'image', type, public_id, asset_id, version, version_id, created_at,
           original_filename, file_name, info FROM assets_v0;
INSERT INTO tags (seq, tag, resource_type, created_at)
    SELECT a.seq, t.tag, 'image', a.created_at FROM tags_v0 t
    JOIN assets_v0 a ON a.type = t.type AND a.public_id = t.public_id;
DROP TABLE tags_v0;
DROP TABLE assets_v0;
"""


@dataclass
class Asset:
    """One stored original and its analysis."""

    type: str
    public_id: str
    asset_id: str
    version: int
    version_id: str
    created_at: str
    original_filename: str | None
    file_name: str
    info: ImageInfo
    tags: list[str] = field(default_factory=list)
    seq: int = 0
    resource_type: str = "image"
    # What Cloudinary keeps beside the file and echoes back: context, display_name ...
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Derived:
    """A transformed copy cached on disk."""

    key: str
    transformation: str
    format: str
    width: int
    height: int
    bytes: int
    file_name: str


@dataclass(frozen=True)
class Listing:
    """What a listing asks for; ``after`` is the sort key of the last item already seen."""

    resource_type: str
    type: str | None = None
    tag: str | None = None
    prefix: str | None = None
    start_at: str | None = None
    descending: bool = True
    after: tuple[Any, ...] | None = None
    limit: int = 10


def storage_key(*parts: str) -> str:
    """A file-name-safe digest of the parts (joined with NUL, which no part can contain)."""
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()


def sort_key(asset: Asset, by_public_id: bool) -> tuple[Any, ...]:
    """The keyset position of ``asset`` in a listing (see ``Storage.list``)."""
    return (asset.public_id,) if by_public_id else (asset.created_at, asset.seq)


class Storage:
    """Thread-safe store of assets under ``data_dir``; survives restarts."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.root = Path(data_dir).resolve()
        self.originals = self.root / "originals"
        self.derived_dir = self.root / "derived"
        self.tmp = self.root / "tmp"
        for folder in (self.originals, self.derived_dir, self.tmp):
            folder.mkdir(parents=True, exist_ok=True)
        # One connection guarded by a lock: writes are tiny, and SQLite serialises them anyway.
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.root / "index.sqlite3", check_same_thread=False,
                                   isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._migrate()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        old = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'assets'").fetchone()
        if old and version == 0:
            self._db.executescript("BEGIN;" + MIGRATE_FROM_0 + "COMMIT;")
            shutil.rmtree(self.derived_dir, ignore_errors=True)
            self.derived_dir.mkdir(parents=True, exist_ok=True)
        else:
            self._db.executescript(SCHEMA)
        self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- paths -----------------------------------------------------------------------------

    def path_of(self, file_name: str, derived: bool = False) -> Path:
        base = self.derived_dir if derived else self.originals
        return base / file_name[:2] / file_name

    def _write(self, file_name: str, data: bytes, derived: bool = False) -> Path:
        """Write atomically (temp file + rename) so a reader never sees half a file."""
        target = self.path_of(file_name, derived)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return target

    def _unlink_if_unused(self, file_name: str) -> None:
        """Remove an original unless another asset shares it (bulk-seeded assets do)."""
        if self._db.execute("SELECT 1 FROM assets WHERE file_name = ? LIMIT 1",
                            (file_name,)).fetchone() is None:
            self.path_of(file_name).unlink(missing_ok=True)

    # -- assets ----------------------------------------------------------------------------

    def _asset(self, row: sqlite3.Row) -> Asset:
        tags = [r["tag"] for r in self._db.execute(
            "SELECT tag FROM tags WHERE seq = ? ORDER BY rowid", (row["seq"],))]
        return Asset(type=row["type"], public_id=row["public_id"], asset_id=row["asset_id"],
                     version=row["version"], version_id=row["version_id"],
                     created_at=row["created_at"], original_filename=row["original_filename"],
                     file_name=row["file_name"], info=ImageInfo.from_dict(json.loads(row["info"])),
                     tags=tags, seq=row["seq"], resource_type=row["resource_type"],
                     extra=json.loads(row["extra"]))

    def get(self, type_: str, public_id: str, resource_type: str = "image") -> Asset | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM assets WHERE resource_type = ? AND type = ? AND public_id = ?",
                (resource_type, type_, public_id)).fetchone()
            return self._asset(row) if row else None

    def _insert(self, asset: Asset) -> None:
        """Insert the row and its tags (inside the caller's transaction); sets ``asset.seq``."""
        cur = self._db.execute(
            "INSERT INTO assets (resource_type, type, public_id, asset_id, version, version_id,"
            " created_at, original_filename, file_name, info, extra)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (asset.resource_type, asset.type, asset.public_id, asset.asset_id, asset.version,
             asset.version_id, asset.created_at, asset.original_filename, asset.file_name,
             json.dumps(asset.info.to_dict()), json.dumps(asset.extra)))
        asset.seq = int(cur.lastrowid or 0)
        self._db.executemany(
            "INSERT OR IGNORE INTO tags (seq, tag, resource_type, created_at) VALUES (?, ?, ?, ?)",
            [(asset.seq, t, asset.resource_type, asset.created_at) for t in asset.tags])

    def _remove_rows(self, seq: int) -> list[str]:
        """Delete an asset's rows (inside the caller's transaction); its derived file names."""
        stale = [r["file_name"] for r in self._db.execute(
            "SELECT file_name FROM derived WHERE asset_seq = ?", (seq,))]
        for table, column in (("assets", "seq"), ("tags", "seq"), ("derived", "asset_seq")):
            self._db.execute(f"DELETE FROM {table} WHERE {column} = ?", (seq,))
        return stale

    def put(self, asset: Asset, data: bytes, overwrite: bool = True) -> tuple[Asset, Asset | None]:
        """Insert ``asset``, or replace one with the same identity when ``overwrite``.

        Returns the stored asset and the one it met (None for a new public_id). A replaced
        asset keeps its asset_id, gets a strictly newer version and moves to its new
        ``created_at`` in listings; with ``overwrite`` false the existing asset is returned
        untouched. Deciding under the lock keeps two concurrent uploads of one public_id from
        both believing they were first.
        """
        file_name = storage_key(asset.resource_type, asset.type, asset.public_id) \
            + "." + asset.info.format
        with self._lock:
            old = self.get(asset.type, asset.public_id, asset.resource_type)
            if old is not None:
                if not overwrite:
                    return old, old
                asset.asset_id = old.asset_id
                asset.version = max(asset.version, old.version + 1)
            self._write(file_name, data)
            asset.file_name = file_name
            stale: list[str] = []
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if old is not None:
                    stale = self._remove_rows(old.seq)
                self._insert(asset)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            if old is not None and old.file_name != file_name:
                self._unlink_if_unused(old.file_name)
            for name in stale:
                self.path_of(name, derived=True).unlink(missing_ok=True)
        return asset, old

    def put_many(self, assets: Iterable[Asset], data: bytes, file_name: str) -> int:
        """Insert many new assets sharing one stored file (the bulk seeding test aid).

        An existing identity is replaced. Returns how many were written.
        """
        count = 0
        with self._lock:
            if not self.path_of(file_name).exists():
                self._write(file_name, data)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for asset in assets:
                    old = self._db.execute(
                        "SELECT seq FROM assets WHERE resource_type = ? AND type = ?"
                        " AND public_id = ?",
                        (asset.resource_type, asset.type, asset.public_id)).fetchone()
                    if old is not None:
                        self._remove_rows(old["seq"])
                    asset.file_name = file_name
                    self._insert(asset)
                    count += 1
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return count

    def delete(self, type_: str, public_id: str, resource_type: str = "image") -> int | None:
        """Remove the asset, its tags and derived files: how many derived went, None if absent."""
        with self._lock:
            old = self.get(type_, public_id, resource_type)
            if old is None:
                return None
            self._db.execute("BEGIN IMMEDIATE")
            stale = self._remove_rows(old.seq)
            self._db.execute("COMMIT")
            self._unlink_if_unused(old.file_name)
            for name in stale:
                self.path_of(name, derived=True).unlink(missing_ok=True)
            return len(stale)

    def put_extra(self, asset: Asset) -> None:
        with self._lock:
            self._db.execute("UPDATE assets SET extra = ? WHERE seq = ?",
                             (json.dumps(asset.extra), asset.seq))

    def set_tags(self, asset: Asset, tags: list[str]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM tags WHERE seq = ?", (asset.seq,))
            self._db.executemany(
                "INSERT OR IGNORE INTO tags (seq, tag, resource_type, created_at) VALUES (?, ?, ?, ?)",
                [(asset.seq, t, asset.resource_type, asset.created_at) for t in tags])
            self._db.execute("COMMIT")
        asset.tags = list(tags)

    def untag_all(self, tag: str, resource_type: str, keep: set[int]) -> None:
        """Take ``tag`` off every asset of ``resource_type`` but those in ``keep`` (set_exclusive)."""
        with self._lock:
            placeholders = ",".join("?" * len(keep)) or "NULL"
            self._db.execute(f"DELETE FROM tags WHERE tag = ? AND resource_type = ?"
                             f" AND seq NOT IN ({placeholders})", (tag, resource_type, *keep))

    def rename(self, asset: Asset, to_type: str, to_public_id: str, overwrite: bool) -> Asset | None:
        """Move ``asset`` to a new type/public_id (derived copies are dropped); None when the
        target exists and ``overwrite`` is false."""
        with self._lock:
            target = self.get(to_type, to_public_id, asset.resource_type)
            if target is not None and target.seq != asset.seq and not overwrite:
                return None
            self._db.execute("BEGIN IMMEDIATE")
            stale = self._remove_rows(target.seq) if target is not None and target.seq != asset.seq else []
            stale += [r["file_name"] for r in self._db.execute(
                "SELECT file_name FROM derived WHERE asset_seq = ?", (asset.seq,))]
            self._db.execute("DELETE FROM derived WHERE asset_seq = ?", (asset.seq,))
            self._db.execute("UPDATE assets SET type = ?, public_id = ? WHERE seq = ?",
                             (to_type, to_public_id, asset.seq))
            self._db.execute("COMMIT")
            if target is not None and target.seq != asset.seq:
                self._unlink_if_unused(target.file_name)
            for name in stale:
                self.path_of(name, derived=True).unlink(missing_ok=True)
            return self.get(to_type, to_public_id, asset.resource_type)

    # -- upload presets --------------------------------------------------------------------

    def get_preset(self, name: str) -> tuple[bool, dict[str, Any]] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM presets WHERE name = ?", (name,)).fetchone()
        return (bool(row["unsigned"]), json.loads(row["settings"])) if row else None

    def put_preset(self, name: str, unsigned: bool, settings: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO presets (name, unsigned, settings) VALUES (?, ?, ?)",
                             (name, int(unsigned), json.dumps(settings)))

    def delete_preset(self, name: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM presets WHERE name = ?", (name,)).rowcount > 0

    def list_presets(self) -> list[tuple[str, bool, dict[str, Any]]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM presets ORDER BY name").fetchall()
        return [(r["name"], bool(r["unsigned"]), json.loads(r["settings"])) for r in rows]

    def list(self, query: Listing) -> tuple[list[Asset], bool]:
        """One page of a listing, and whether more follow.

        Newest first by ``(created_at, seq)`` unless ``descending`` is false; with a ``prefix``
        the order is by public_id (as Cloudinary's).
        """
        by_public_id = query.prefix is not None
        keys = ("a.public_id",) if by_public_id else ("a.created_at", "a.seq")
        if query.tag is not None:
            # The tag table carries the sort key, so a tag's page is one index range.
            keys = ("t.created_at", "t.seq") if not by_public_id else keys
            sql = "SELECT a.* FROM tags t JOIN assets a ON a.seq = t.seq WHERE t.tag = ?" \
                  " AND t.resource_type = ?"
            args: list[Any] = [query.tag, query.resource_type]
        else:
            sql = "SELECT a.* FROM assets a WHERE a.resource_type = ?"
            args = [query.resource_type]
        if query.type is not None:
            sql += " AND a.type = ?"
            args.append(query.type)
        if query.prefix:
            # Ranges, not LIKE: LIKE would read "_" and "%" in a prefix as wildcards.
            sql += " AND a.public_id >= ? AND a.public_id < ?"
            args += [query.prefix, query.prefix + "\U0010ffff"]
        if query.start_at is not None:
            sql += f" AND {keys[0]} >= ?"
            args.append(query.start_at)
        op, order = ("<", "DESC") if query.descending else (">", "ASC")
        if query.after is not None:
            sql += f" AND ({', '.join(keys)}) {op} ({', '.join('?' * len(keys))})"
            args += list(query.after)
        sql += " ORDER BY " + ", ".join(f"{k} {order}" for k in keys) + " LIMIT ?"
        args.append(query.limit + 1)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
            return [self._asset(r) for r in rows[:query.limit]], len(rows) > query.limit

    def iter_assets(self) -> Iterator[Asset]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM assets ORDER BY seq").fetchall()
            assets = [self._asset(r) for r in rows]
        yield from assets

    def clear(self) -> None:
        """Forget every asset and file (``/_emulator/reset``)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            for table in ("assets", "tags", "derived", "presets"):
                self._db.execute(f"DELETE FROM {table}")
            self._db.execute("COMMIT")
            for folder in (self.originals, self.derived_dir):
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir(parents=True, exist_ok=True)

    # -- derived ---------------------------------------------------------------------------

    def derived_key(self, asset: Asset, transformation: str, fmt: str) -> str:
        return storage_key(asset.resource_type, asset.type, asset.public_id, asset.version_id,
                           transformation, fmt)

    def get_derived(self, asset: Asset, transformation: str, fmt: str) -> Derived | None:
        key = self.derived_key(asset, transformation, fmt)
        with self._lock:
            row = self._db.execute("SELECT * FROM derived WHERE key = ?", (key,)).fetchone()
        if row is None or not self.path_of(row["file_name"], derived=True).exists():
            return None
        return self._derived(row)

    @staticmethod
    def _derived(row: sqlite3.Row) -> Derived:
        return Derived(key=row["key"], transformation=row["transformation"], format=row["format"],
                       width=row["width"], height=row["height"], bytes=row["bytes"],
                       file_name=row["file_name"])

    def list_derived(self, asset: Asset) -> list[Derived]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM derived WHERE asset_seq = ? ORDER BY rowid",
                                    (asset.seq,)).fetchall()
        return [self._derived(r) for r in rows]

    def put_derived(self, asset: Asset, transformation: str, fmt: str, data: bytes,
                    width: int, height: int) -> Derived:
        key = self.derived_key(asset, transformation, fmt)
        file_name = key + "." + fmt
        with self._lock:
            # The asset may have been replaced or destroyed while we rendered: do not cache then.
            current = self.get(asset.type, asset.public_id, asset.resource_type)
            derived = Derived(key, transformation, fmt, width, height, len(data), file_name)
            if current is None or current.version_id != asset.version_id:
                return derived
            self._write(file_name, data, derived=True)
            self._db.execute(
                "INSERT OR REPLACE INTO derived (key, asset_seq, transformation, format,"
                " width, height, bytes, file_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (key, current.seq, transformation, fmt, width, height, len(data), file_name))
        return derived
