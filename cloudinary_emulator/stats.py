"""Call and notification counters served at ``/_emulator/stats``."""
from __future__ import annotations

import threading
from typing import Any

CALL_KINDS = ("upload", "explicit", "destroy", "tags", "rename", "admin_resource", "admin_resources_by_tag", "admin_resources",
              "admin_delete_resources", "admin_upload_presets", "delivery")
NOTIFICATION_KINDS = ("sent", "failed", "dropped", "duplicated")


class Stats:
    """Thread-safe counters; ``snapshot()`` has the documented shape."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._calls = dict.fromkeys(CALL_KINDS, 0)
            self._notifications = dict.fromkeys(NOTIFICATION_KINDS, 0)
            self._admin_calls = 0
            self._uploads = 0
            self._rate_limited = 0
            self._errors_injected = 0
            self._hung = 0
            self._hung_given_up = 0

    def call(self, kind: str) -> None:
        with self._lock:
            self._calls[kind] += 1

    def admin_call(self) -> None:
        with self._lock:
            self._admin_calls += 1

    def upload_done(self) -> None:
        with self._lock:
            self._uploads += 1

    def rate_limited(self) -> None:
        with self._lock:
            self._rate_limited += 1

    def error_injected(self) -> None:
        with self._lock:
            self._errors_injected += 1

    def hung(self, given_up: bool = False) -> None:
        """A call held by ``hang_calls`` (``given_up``: one whose client then gave up, dropped)."""
        with self._lock:
            if given_up:
                self._hung_given_up += 1
            else:
                self._hung += 1

    def notification(self, outcome: str, count: int = 1) -> None:
        with self._lock:
            self._notifications[outcome] += count

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": dict(self._calls),
                "admin_calls": self._admin_calls,
                "uploads": self._uploads,
                "notifications": dict(self._notifications),
                "rate_limited": self._rate_limited,
                "errors_injected": self._errors_injected,
                "hung": self._hung,
                "hung_given_up": self._hung_given_up,
            }
