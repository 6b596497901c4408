"""The client side of the trials: API calls spread round-robin over the web hosts (retried on
the other host when one does not answer), and a burst of uploads through the signed form."""
from __future__ import annotations

import io
import itertools
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cloudinary
import cloudinary.uploader
import requests
from PIL import Image as PILImage

from common import tokens

#: Answers that mean "this host cannot serve it now": try the next one.
RETRY_STATUSES = {502, 503, 504}


class WebPool:
    """Round-robin over the web hosts; a connection error, a timeout or a 502/503/504 moves the
    call to the next host (and after a full round, waits a little and goes round again)."""

    def __init__(self, bases: list[str], jwt_secret: str, attempts: int = 12,
                 timeout: tuple[float, float] = (1.0, 5.0)) -> None:
        self.bases = bases
        self.jwt_secret = jwt_secret
        self.attempts = attempts
        self.timeout = timeout
        self._next = itertools.cycle(range(len(bases)))
        self._lock = threading.Lock()
        self._local = threading.local()
        self.served: Counter[str] = Counter()
        self.failed_over: Counter[str] = Counter()

    def _session(self) -> requests.Session:
        if getattr(self._local, "session", None) is None:
            self._local.session = requests.Session()
        return self._local.session

    def token(self, album_id: str) -> str:
        return tokens.issue_session("cluster-client", {album_id: ("image_upload", "read", "manage")}, self.jwt_secret, 3600)

    def request(self, method: str, path: str, album_id: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token(album_id)}"}
        last: str = ""
        for attempt in range(self.attempts):
            with self._lock:
                base = self.bases[next(self._next)]
            try:
                response = self._session().request(method, base + path, headers=headers, timeout=self.timeout, **kwargs)
            except requests.RequestException as exc:
                last = f"{base}: {type(exc).__name__}"
                self._session().close()  # a connection to a dead host must not be reused
            else:
                if response.status_code not in RETRY_STATUSES:
                    with self._lock:
                        self.served[base] += 1
                    return response
                last = f"{base}: {response.status_code}"
            with self._lock:
                self.failed_over[base] += 1
            if attempt % len(self.bases) == len(self.bases) - 1:
                time.sleep(min(0.25 * (attempt + 1), 2.0))
        raise AssertionError(f"no web host served {method} {path} after {self.attempts} attempts (last: {last})")

    def upload_done(self, album_id: str) -> dict[str, Any]:
        response = self.request("POST", f"/api/v1/albums/{album_id}/upload_done", album_id)
        assert response.status_code == 200, response.text
        return response.json()

    def images(self, album_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        cursor = None
        while True:
            params = {"limit": 200, **({"cursor": cursor} if cursor else {})}
            response = self.request("GET", f"/api/v1/albums/{album_id}/images", album_id, params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            found += body["images"]
            cursor = body["next_cursor"]
            if not cursor:
                return found

    def album(self, album_id: str) -> dict[str, Any]:
        response = self.request("GET", f"/api/v1/albums/{album_id}", album_id)
        assert response.status_code == 200, response.text
        return response.json()


def tiny_jpeg(seed: int) -> bytes:
    """A small photo of its own (distinct bytes, so distinct assets)."""
    rnd = random.Random(seed)
    img = PILImage.new("RGB", (48, 32), tuple(rnd.randrange(256) for _ in range(3)))
    for _ in range(20):
        img.putpixel((rnd.randrange(48), rnd.randrange(32)), tuple(rnd.randrange(256) for _ in range(3)))
    out = io.BytesIO()
    img.save(out, "JPEG")
    return out.getvalue()


@dataclass
class Burst:
    public_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0
    fault_at: float | None = None  # time.monotonic() when the fault was staged


def upload_burst(form: dict[str, Any], photos: list[Path], fault_after: int | None = None,
                 fault: Callable[[], None] | None = None, threads: int = 8) -> Burst:
    """Upload every photo with the official SDK through the signed form (straight to
    Cloudinary), ``threads`` at a time; once ``fault_after`` uploads are done, stage ``fault``
    while the rest keep going."""
    burst = Burst()
    done = 0
    lock = threading.Lock()
    fault_ready = threading.Event()

    def one(photo: Path) -> str:
        nonlocal done
        result = cloudinary.uploader.call_api("upload", dict(form["params"]), unsigned=True, file=str(photo),
                                              resource_type="auto")
        with lock:
            done += 1
            if fault_after is not None and done >= fault_after:
                fault_ready.set()
        return result["public_id"]

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(one, photo) for photo in photos]
        if fault is not None:
            fault_ready.wait(timeout=600)
            burst.fault_at = time.monotonic()
            fault()
        burst.public_ids = [f.result() for f in futures]
    burst.seconds = time.monotonic() - started
    return burst
