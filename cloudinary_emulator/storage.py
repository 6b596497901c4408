"""Assets on disk: original and derived files plus a small SQLite index.

File names are SHA-256 digests of ``type/public_id`` (and of the transformation for derived
images), so no public_id can steer a write outside the data directory, and folders such as
``album/photo1`` need no directories of their own.
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
from typing import Iterator

from cloudinary_emulator.analysis import ImageInfo

SCHEMA = """
CREATE TABLE IF NOT EXISTS assets (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    type TEXT NOT NULL,
    public_id TEXT NOT NULL,
    asset_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    version_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    original_filename TEXT,
    file_name TEXT NOT NULL,
    info TEXT NOT NULL,
    UNIQUE (type, public_id)
);
CREATE TABLE IF NOT EXISTS tags (
    type TEXT NOT NULL,
    public_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (type, public_id, tag)
);
CREATE INDEX IF NOT EXISTS tags_by_tag ON tags (tag);
CREATE TABLE IF NOT EXISTS derived (
    key TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    public_id TEXT NOT NULL,
    transformation TEXT NOT NULL,
    format TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    file_name TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS derived_by_asset ON derived (type, public_id);
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


def storage_key(*parts: str) -> str:
    """A file-name-safe digest of the parts (joined with NUL, which no part can contain)."""
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()


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
        self._db.executescript(SCHEMA)

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

    # -- assets ----------------------------------------------------------------------------

    def _asset(self, row: sqlite3.Row) -> Asset:
        tags = [r["tag"] for r in self._db.execute(
            "SELECT tag FROM tags WHERE type = ? AND public_id = ? ORDER BY rowid",
            (row["type"], row["public_id"]))]
        return Asset(type=row["type"], public_id=row["public_id"], asset_id=row["asset_id"],
                     version=row["version"], version_id=row["version_id"],
                     created_at=row["created_at"], original_filename=row["original_filename"],
                     file_name=row["file_name"], info=ImageInfo.from_dict(json.loads(row["info"])),
                     tags=tags, seq=row["seq"])

    def get(self, type_: str, public_id: str) -> Asset | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM assets WHERE type = ? AND public_id = ?",
                                   (type_, public_id)).fetchone()
            return self._asset(row) if row else None

    def put(self, asset: Asset, data: bytes, overwrite: bool = True) -> tuple[Asset, Asset | None]:
        """Insert ``asset``, or replace one with the same type/public_id when ``overwrite``.

        Returns the stored asset and the one it met (None for a new public_id). A replaced
        asset keeps its asset_id and listing position and gets a strictly newer version; with
        ``overwrite`` false the existing asset is returned untouched. Deciding under the lock
        keeps two concurrent uploads of one public_id from both believing they were first.
        """
        file_name = storage_key(asset.type, asset.public_id) + "." + asset.info.format
        with self._lock:
            old = self.get(asset.type, asset.public_id)
            if old is not None:
                if not overwrite:
                    return old, old
                asset.asset_id = old.asset_id
                asset.version = max(asset.version, old.version + 1)
            self._write(file_name, data)
            asset.file_name = file_name
            info = json.dumps(asset.info.to_dict())
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if old is None:
                    cur = self._db.execute(
                        "INSERT INTO assets (type, public_id, asset_id, version, version_id,"
                        " created_at, original_filename, file_name, info)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (asset.type, asset.public_id, asset.asset_id, asset.version,
                         asset.version_id, asset.created_at, asset.original_filename,
                         file_name, info))
                    asset.seq = int(cur.lastrowid or 0)
                else:
                    self._db.execute(
                        "UPDATE assets SET asset_id = ?, version = ?, version_id = ?,"
                        " created_at = ?, original_filename = ?, file_name = ?, info = ?"
                        " WHERE type = ? AND public_id = ?",
                        (asset.asset_id, asset.version, asset.version_id, asset.created_at,
                         asset.original_filename, file_name, info, asset.type, asset.public_id))
                    asset.seq = old.seq
                    self._db.execute("DELETE FROM tags WHERE type = ? AND public_id = ?",
                                     (asset.type, asset.public_id))
                self._db.executemany(
                    "INSERT OR IGNORE INTO tags (type, public_id, tag) VALUES (?, ?, ?)",
                    [(asset.type, asset.public_id, t) for t in asset.tags])
                stale = self._derived_rows(asset.type, asset.public_id)
                self._db.execute("DELETE FROM derived WHERE type = ? AND public_id = ?",
                                 (asset.type, asset.public_id))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            if old is not None and old.file_name != file_name:
                self.path_of(old.file_name).unlink(missing_ok=True)
            for name in stale:
                self.path_of(name, derived=True).unlink(missing_ok=True)
        return asset, old

    def delete(self, type_: str, public_id: str) -> bool:
        """Remove the asset, its tags and derived files; False when it did not exist."""
        with self._lock:
            old = self.get(type_, public_id)
            if old is None:
                return False
            stale = self._derived_rows(type_, public_id)
            self._db.execute("BEGIN IMMEDIATE")
            for table in ("assets", "tags", "derived"):
                self._db.execute(f"DELETE FROM {table} WHERE type = ? AND public_id = ?",
                                 (type_, public_id))
            self._db.execute("COMMIT")
            self.path_of(old.file_name).unlink(missing_ok=True)
            for name in stale:
                self.path_of(name, derived=True).unlink(missing_ok=True)
            return True

    def by_tag(self, tag: str, after_seq: int, limit: int) -> tuple[list[Asset], bool]:
        """Assets with ``tag`` in upload order after ``after_seq``; and whether more follow."""
        with self._lock:
            rows = self._db.execute(
                "SELECT a.* FROM assets a JOIN tags t"
                " ON t.type = a.type AND t.public_id = a.public_id"
                " WHERE t.tag = ? AND a.seq > ? ORDER BY a.seq LIMIT ?",
                (tag, after_seq, limit + 1)).fetchall()
            return [self._asset(r) for r in rows[:limit]], len(rows) > limit

    def iter_assets(self) -> Iterator[Asset]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM assets ORDER BY seq").fetchall()
            assets = [self._asset(r) for r in rows]
        yield from assets

    def clear(self) -> None:
        """Forget every asset and file (``/_emulator/reset``)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            for table in ("assets", "tags", "derived"):
                self._db.execute(f"DELETE FROM {table}")
            self._db.execute("COMMIT")
            for folder in (self.originals, self.derived_dir):
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir(parents=True, exist_ok=True)

    # -- derived ---------------------------------------------------------------------------

    def _derived_rows(self, type_: str, public_id: str) -> list[str]:
        return [r["file_name"] for r in self._db.execute(
            "SELECT file_name FROM derived WHERE type = ? AND public_id = ?", (type_, public_id))]

    def derived_key(self, asset: Asset, transformation: str, fmt: str) -> str:
        return storage_key(asset.type, asset.public_id, asset.version_id, transformation, fmt)

    def get_derived(self, asset: Asset, transformation: str, fmt: str) -> Derived | None:
        key = self.derived_key(asset, transformation, fmt)
        with self._lock:
            row = self._db.execute("SELECT * FROM derived WHERE key = ?", (key,)).fetchone()
        if row is None or not self.path_of(row["file_name"], derived=True).exists():
            return None
        return Derived(key=key, transformation=row["transformation"], format=row["format"],
                       width=row["width"], height=row["height"], bytes=row["bytes"],
                       file_name=row["file_name"])

    def put_derived(self, asset: Asset, transformation: str, fmt: str, data: bytes,
                    width: int, height: int) -> Derived:
        key = self.derived_key(asset, transformation, fmt)
        file_name = key + "." + fmt
        with self._lock:
            # The asset may have been replaced or destroyed while we rendered: do not cache then.
            current = self.get(asset.type, asset.public_id)
            derived = Derived(key, transformation, fmt, width, height, len(data), file_name)
            if current is None or current.version_id != asset.version_id:
                return derived
            self._write(file_name, data, derived=True)
            self._db.execute(
                "INSERT OR REPLACE INTO derived (key, type, public_id, transformation, format,"
                " width, height, bytes, file_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, asset.type, asset.public_id, transformation, fmt, width, height,
                 len(data), file_name))
        return derived
