"""Renders of identical originals, made once.

An original's bytes are named by its etag (their MD5), and a render depends only on those bytes,
the transformation and the format, so two assets with the same bytes share their renders. Every
bulk-seeded asset shares one image, and the tests upload the same few fixtures again and again;
without this each asset's first ``explicit`` decoded, detected faces, resized and encoded anew
(about half of the emulator's CPU per call). Each asset still gets its own derived entry and
file, as on Cloudinary; only the pixel work is shared. Bounded by bytes, least recently used out
first (by hand: ``functools.lru_cache`` bounds entries, not bytes, and none of our dependencies
has such a cache). Stills only, a video's poster included: a derived video is large and rarely
asked twice."""
from __future__ import annotations

import threading
from collections import OrderedDict

RenderKey = tuple[str, str, str, str]  # (etag, resource type, transformation, format)
Render = tuple[bytes, int, int]  # (encoded bytes, width, height)


class RenderMemo:
    def __init__(self, max_bytes: int = 8 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._renders: OrderedDict[RenderKey, Render] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: RenderKey) -> Render | None:
        with self._lock:
            render = self._renders.get(key)
            if render is not None:
                self._renders.move_to_end(key)
            return render

    def put(self, key: RenderKey, render: Render) -> None:
        size = len(render[0])
        if size > self.max_bytes // 4:
            return
        with self._lock:
            old = self._renders.pop(key, None)
            if old is not None:
                self._bytes -= len(old[0])
            self._renders[key] = render
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, evicted = self._renders.popitem(last=False)
                self._bytes -= len(evicted[0])
