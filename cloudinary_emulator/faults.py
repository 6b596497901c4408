"""Fault injection (latency, errors, dropped/duplicated notifications) and the Admin API budget."""
from __future__ import annotations

import random
import threading
import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable


class FaultError(ValueError):
    """A fault setting with a wrong name or value."""


@dataclass
class Faults:
    """Fault settings; the field names are the public keys of ``/_emulator/faults``."""

    latency_ms: float = 0.0
    error_rate: float = 0.0
    #: Only ``explicit`` calls (derived assets, analysis) fail, uploads work: how Cloudinary's
    #: incidents often look ("transformations degraded").
    explicit_error_rate: float = 0.0
    admin_budget: int = 500
    admin_window_seconds: float = 3600.0
    drop_notifications: float = 0.0
    duplicate_notifications: float = 0.0
    duplicate_copies: int = 2
    #: The workers' link cut: this fraction of the calls a backend makes (Upload API calls other
    #: than ``upload``, and every Admin API call) gets no answer at all while it is above 0, the
    #: connection accepted and left open. Set back to 0, the hung calls go through and are
    #: answered, as requests whose packets are delivered once a cut link is back; a call whose
    #: client gave up meanwhile is dropped. Uploads (the clients') and notifications go on.
    hang_calls: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_FRACTIONS = {"error_rate", "explicit_error_rate", "drop_notifications", "duplicate_notifications", "hang_calls"}
#: The longest a call hangs, whatever the fault says: no request thread is held for ever.
HANG_LIMIT = 600.0
#: How often a hung call looks whether its client has given up.
HANG_POLL = 0.25


def validated(current: Faults, changes: dict[str, Any]) -> Faults:
    """Return a copy of ``current`` with ``changes`` applied, or raise FaultError."""
    if not isinstance(changes, dict):
        raise FaultError("Faults must be a JSON object")
    known = {f.name: f.type for f in fields(Faults)}
    values = current.to_dict()
    for key, raw in changes.items():
        if key not in known:
            raise FaultError(f"Unknown fault {key!r}; known: {', '.join(sorted(known))}")
        # bool is an int subclass; "true" is no number either.
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
            raise FaultError(f"Fault {key} must be a number")
        try:
            number = float(raw)
        except ValueError:
            raise FaultError(f"Fault {key} must be a number") from None
        if number != number or number < 0:
            raise FaultError(f"Fault {key} must be a non-negative number")
        if key in _FRACTIONS and number > 1:
            raise FaultError(f"Fault {key} must be between 0 and 1")
        if key in ("admin_budget", "duplicate_copies"):
            if number != int(number):
                raise FaultError(f"Fault {key} must be an integer")
            values[key] = int(number)
        else:
            values[key] = number
    if values["admin_window_seconds"] <= 0:
        raise FaultError("Fault admin_window_seconds must be positive")
    if values["duplicate_copies"] < 1:
        raise FaultError("Fault duplicate_copies must be at least 1")
    return Faults(**values)


class FaultState:
    """The live fault settings, shared by all request threads."""

    def __init__(self, initial: Faults) -> None:
        self._lock = threading.Condition()  # notified when the faults change (hung calls wake up)
        self._faults = initial
        self._rng = random.Random()
        self._closed = False

    def get(self) -> Faults:
        with self._lock:
            return self._faults

    def update(self, changes: dict[str, Any]) -> Faults:
        with self._lock:
            self._faults = validated(self._faults, changes)
            self._lock.notify_all()
            return self._faults

    def replace(self, faults: Faults) -> None:
        with self._lock:
            self._faults = faults
            self._lock.notify_all()

    def hang(self, limit: float = HANG_LIMIT, on_hang: Callable[[], None] | None = None,
             client_gone: Callable[[], bool] | None = None) -> str | None:
        """Hold the calling request thread while ``hang_calls`` picks it, until the fault is set
        back to 0 (``"answered"``: the call goes on), the client gives up and closes the
        connection (``"gone"``: nothing to answer, the thread is free again), the emulator shuts
        down, or ``limit`` seconds pass. None if the call does not hang."""
        with self._lock:
            rate = self._faults.hang_calls
            if rate <= 0 or self._closed or (rate < 1 and self._rng.random() >= rate):
                return None
            if on_hang is not None:
                on_hang()
            deadline = time.monotonic() + limit
            while self._faults.hang_calls > 0 and not self._closed:
                if client_gone is not None and client_gone():
                    return "gone"
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(min(left, HANG_POLL))
            return "answered"

    def close(self) -> None:
        """Let every hung call go (the server is stopping)."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()

    def chance(self, probability: float) -> bool:
        """True with the given probability; exact at 0 and 1 so tests need no luck."""
        if probability <= 0:
            return False
        if probability >= 1:
            return True
        with self._lock:
            return self._rng.random() < probability


@dataclass
class BudgetDecision:
    """The outcome of spending one Admin API call: allowed or not, and the headers' values."""

    allowed: bool
    limit: int
    remaining: int
    reset_at: float


class AdminBudget:
    """An hourly (configurable) call budget for the Admin API, as Cloudinary enforces it.

    The window opens at the first call after the previous one expired, so a test that sets a
    small budget never straddles a window boundary by bad luck.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._window_start: float | None = None
        self._used = 0

    def spend(self, faults: Faults, now: float | None = None) -> BudgetDecision:
        now = time.time() if now is None else now
        with self._lock:
            start = self._current_start(faults, now)
            allowed = self._used < faults.admin_budget
            if allowed:
                self._used += 1
            return BudgetDecision(allowed, faults.admin_budget,
                                  max(faults.admin_budget - self._used, 0),
                                  start + faults.admin_window_seconds)

    def peek(self, faults: Faults, now: float | None = None) -> BudgetDecision:
        """The current figures without spending (for answers that do not count, e.g. 401)."""
        now = time.time() if now is None else now
        with self._lock:
            start = self._current_start(faults, now)
            return BudgetDecision(self._used < faults.admin_budget, faults.admin_budget,
                                  max(faults.admin_budget - self._used, 0),
                                  start + faults.admin_window_seconds)

    def _current_start(self, faults: Faults, now: float) -> float:
        if self._window_start is None or now >= self._window_start + faults.admin_window_seconds:
            self._window_start = now
            self._used = 0
        return self._window_start

    def reset(self) -> None:
        with self._lock:
            self._window_start = None
            self._used = 0
