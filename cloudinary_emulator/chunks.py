"""Chunked uploads (``upload_large``): parts with ``X-Unique-Upload-Id`` and ``Content-Range``.

Each part is a complete, signed upload request whose file is one byte range of the whole. The
parts are written at their offsets into one temporary file per upload id; the request that
completes the byte count gets the whole file back and is processed as an ordinary upload. The
first part's choice of public_id is kept, so every part's answer names the same asset.
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cloudinary_emulator.errors import CloudinaryError

CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


@dataclass
class PartialUpload:
    path: Path
    total: int
    public_id: str
    received: set[tuple[int, int]] = field(default_factory=set)

    @property
    def received_bytes(self) -> int:
        return sum(end - start + 1 for start, end in self.received)


class ChunkAssembler:
    """Partial uploads by id; thread-safe (parts of one upload may arrive concurrently)."""

    def __init__(self, tmp_dir: Path, max_file_size: int) -> None:
        self._tmp = tmp_dir
        self._max = max_file_size
        self._lock = threading.Lock()
        self._uploads: dict[str, PartialUpload] = {}

    def receive(self, upload_id: str, content_range: str, data: bytes,
                public_id: str) -> tuple[PartialUpload, bytes | None]:
        """Store one part; returns the upload and, once every byte is in, the whole file."""
        match = CONTENT_RANGE_RE.match(content_range.strip())
        if not match or not upload_id:
            raise CloudinaryError(400, f"Invalid Content-Range - {content_range}")
        start, end, total = (int(g) for g in match.groups())
        if end < start or end >= total or end - start + 1 != len(data):
            raise CloudinaryError(400, f"Invalid Content-Range - {content_range}")
        if total > self._max:
            raise CloudinaryError(400, f"File size too large. Got {total}. Maximum is {self._max}.")
        key = hashlib.sha256(upload_id.encode()).hexdigest()
        with self._lock:
            upload = self._uploads.get(key)
            if upload is None:
                upload = PartialUpload(self._tmp / f"chunks-{key}", total, public_id)
                upload.path.touch()
                self._uploads[key] = upload
            elif upload.total != total:
                raise CloudinaryError(400, f"Invalid Content-Range - {content_range}")
            with open(upload.path, "r+b") as handle:
                handle.seek(start)
                handle.write(data)
            upload.received.add((start, end))
            if upload.received_bytes < total:
                return upload, None
            del self._uploads[key]
        whole = upload.path.read_bytes()
        os.unlink(upload.path)
        return upload, whole
