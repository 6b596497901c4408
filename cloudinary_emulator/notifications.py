"""Outgoing webhook notifications, sent off the request thread with bounded retries."""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Callable

import requests

from cloudinary_emulator.faults import FaultState
from cloudinary_emulator.signing import notification_signature
from cloudinary_emulator.stats import Stats

log = logging.getLogger(__name__)


def iso_now() -> str:
    """ISO 8601 in UTC with a ``Z``, Cloudinary's timestamp style."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Notifier:
    """Queues notifications on a small thread pool; each delivery retries with doubling delays."""

    def __init__(self, *, secret: str, algorithm: str, faults: FaultState, stats: Stats,
                 retries: int, retry_delay: float, timeout: float, workers: int,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._secret = secret
        self._algorithm = algorithm
        self._faults = faults
        self._stats = stats
        self._retries = retries
        self._retry_delay = retry_delay
        self._timeout = timeout
        self._sleep = sleep
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="notify")
        self._session_local = threading.local()

    def notify(self, url: str, payload: dict[str, Any]) -> None:
        """Queue one notification; drop and duplicate faults are decided here, once."""
        faults = self._faults.get()
        if self._faults.chance(faults.drop_notifications):
            self._stats.notification("dropped")
            return
        copies = 1
        if self._faults.chance(faults.duplicate_notifications) and faults.duplicate_copies > 1:
            copies = faults.duplicate_copies
            self._stats.notification("duplicated")
        body = dict(payload)
        body.setdefault("timestamp", iso_now())
        body.setdefault("request_id", uuid.uuid4().hex)
        for _ in range(copies):
            self._pool.submit(self._deliver, url, body)

    def _session(self) -> requests.Session:
        session = getattr(self._session_local, "session", None)
        if session is None:
            session = self._session_local.session = requests.Session()
        return session

    def _deliver(self, url: str, payload: dict[str, Any]) -> None:
        body = json.dumps(payload)
        delay = self._retry_delay
        where = url.split("?", 1)[0]  # the query holds the receiver's token: never logged
        for attempt in range(self._retries + 1):
            # Signed per attempt: the receiver checks the timestamp's age.
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "X-Cld-Timestamp": str(timestamp),
                "X-Cld-Signature": notification_signature(body, timestamp, self._secret,
                                                          self._algorithm),
                "User-Agent": "Cloudinary-Emulator",
            }
            try:
                response = self._session().post(url, data=body.encode("utf-8"), headers=headers,
                                                timeout=self._timeout)
                if response.status_code == 200:
                    self._stats.notification("sent")
                    return
                log.info("notification to %s answered %s (attempt %d)", where,
                         response.status_code, attempt + 1)
            except requests.RequestException as exc:
                # The exception's text repeats the URL: its type is enough.
                log.info("notification to %s failed: %s (attempt %d)", where, type(exc).__name__,
                         attempt + 1)
            if attempt < self._retries:
                self._sleep(delay)
                delay *= 2
        self._stats.notification("failed")

    def shutdown(self, wait: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
