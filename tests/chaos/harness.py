"""The chaos harness: the whole stack as separate processes on a private Redis that a scenario
may kill and bring back empty, and the faults as they come in production (SIGKILL, a Redis
restarted empty, a Redis down while webhooks arrive, lost and repeated webhooks, a failing and
rate-limited Cloudinary), fired in the middle of a burst of uploads. Each scenario then measures
how long the album takes to converge and checks what a user relies on: every photo ready once,
``images_count`` and the cover exact, the Admin API within its budget.

Used by tests/chaos/test_chaos.py (modest N, short timers) and bench/chaos.py (N=500, the
product's default timers).
"""
from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cloudinary.exceptions
from PIL import Image as PILImage
from sqlalchemy import func, select

from common import db
from common.models import Album, Image
from tests.e2e.stack import Stack, wait_for
from tests.redis_server import RedisServer

#: The faults every scenario starts from: none.
NO_FAULTS = dict(latency_ms=0, error_rate=0, explicit_error_rate=0, drop_notifications=0, duplicate_notifications=0, duplicate_copies=2,
                 admin_budget=500, admin_window_seconds=3600, hang_calls=0)
COVER_SIZE = 4


class ChaosStack(Stack):
    """The Procfile's shape: web (gunicorn), a ``fast`` prefork worker, an ``io`` threads worker,
    beat, and the emulator; the broker is a private Redis the scenarios may kill."""

    def __init__(self, tmp: Path, jwt_secret: str, settings: dict[str, str], io_concurrency: int = 8) -> None:
        self.redis = RedisServer(tmp / "redis")
        self.io_concurrency = io_concurrency
        super().__init__(tmp, jwt_secret, default_worker=False,
                         extra_env={"CELERY_BROKER_URL": self.redis.url, "REDIS_URL": self.redis.url, **settings})
        self.fast: subprocess.Popen[bytes] | None = None
        self.io: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.redis.start()
        super().start()
        self.start_fast()
        self.io = self.start_worker("io", pool="threads", concurrency=self.io_concurrency, queues="io")

    @property
    def call_timeout(self) -> float:
        """How long the workers' Cloudinary calls wait for an answer (``CLOUDINARY_CALL_TIMEOUT``)."""
        return float(self.extra_env.get("CLOUDINARY_CALL_TIMEOUT", 30))

    def purge_queues(self) -> None:
        pass  # a fresh private Redis

    def start_fast(self) -> None:
        self.fast = self.start_worker(f"fast-{len(self.workers)}", pool="prefork", concurrency=2, queues="fast")

    def kill_fast(self) -> None:
        """SIGKILL the fast worker's pool children, then its parent: nothing is acknowledged or
        handed back; what the parent had reserved stays with the broker until its visibility
        timeout."""
        assert self.fast is not None
        children = subprocess.run(["pgrep", "-P", str(self.fast.pid)], capture_output=True, text=True).stdout.split()
        for pid in children:
            os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.2)
        os.kill(self.fast.pid, signal.SIGKILL)
        self.fast.wait(timeout=10)
        self.workers.remove(self.fast)
        self.fast = None

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.redis.stop()


def tiny_jpeg(seed: int) -> bytes:
    """A distinct small photo (noise, so that no two share a pHash)."""
    rnd = random.Random(seed)
    img = PILImage.new("RGB", (64, 48), tuple(rnd.randrange(256) for _ in range(3)))
    pixels = img.load()
    for x in range(64):
        for y in range(48):
            if rnd.random() < 0.3:
                pixels[x, y] = tuple(rnd.randrange(256) for _ in range(3))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=80)
    return out.getvalue()


@dataclass
class Burst:
    """A burst of uploads through the signed form, the fault fired after ``fire_after`` of them."""

    stack: ChaosStack
    album: str
    files: list[Path]
    fault: Callable[["Burst"], None] | None = None
    fire_after: int = 0
    threads: int = 8
    uploaded: list[dict[str, Any]] = field(default_factory=list)
    cleared: float = 0.0
    _done: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _fault_thread: threading.Thread | None = None

    def upload_one(self, form: dict[str, Any], path: Path) -> None:
        # A client retries an upload Cloudinary failed (500) or could not take; no photo is
        # uploaded twice (only a failed call is repeated).
        for attempt in range(8):
            try:
                result = self.stack.upload(form, path)
                break
            except (cloudinary.exceptions.Error, cloudinary.exceptions.GeneralError):
                time.sleep(0.2 * (attempt + 1))
        else:
            raise AssertionError(f"upload of {path.name} failed 8 times")
        with self._lock:
            self.uploaded.append(result)
            self._done += 1
            fire = self.fault is not None and self._done == self.fire_after
        if fire:
            self._fault_thread = threading.Thread(target=self._fire, daemon=True)
            self._fault_thread.start()

    def _fire(self) -> None:
        assert self.fault is not None
        self.fault(self)
        self.cleared = time.monotonic()

    def run(self) -> None:
        form = self.stack.upload_done(self.album)["upload_form"]
        with ThreadPoolExecutor(self.threads) as pool:
            list(pool.map(lambda p: self.upload_one(form, p), self.files))
        if self._fault_thread is not None:
            self._fault_thread.join(timeout=300)
        self.cleared = max(self.cleared, time.monotonic())
        # The client says it is done, as every client of the upload form does; if the API cannot
        # answer right now (a web host restarting), it tries again.
        wait_for(lambda: self._upload_done_ok(), 60, interval=1.0, what="upload_done to answer")

    def _upload_done_ok(self) -> bool:
        try:
            return self.stack.api("POST", f"/api/v1/albums/{self.album}/upload_done", self.album).status_code == 200
        except Exception:  # noqa: BLE001 - the client retries whatever went wrong
            return False


@dataclass
class Outcome:
    scenario: str
    album: str
    photos: int
    ready: int
    failed: dict[str, str]
    rows: int
    missing: int  # uploaded photos with no row
    images_count: int
    cover_exact: bool
    admin_calls: int
    admin_budget: int
    rate_limited: int
    calls_given_up: int  # worker calls that hung until they timed out (the emulator dropped them)
    converged_after: float  # seconds from the fault clearing (and upload_done) to ready + counted
    count_lag: float  # seconds from every photo ready to the count and cover exact

    HEADER = ("| scenario | ready | extra rows | missing | images_count | cover exact | Admin calls / budget "
              "| converged after the fault cleared | count exact after all ready |\n"
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |")

    def row(self) -> str:
        return (f"| {self.scenario} | {self.ready}/{self.photos} | {self.rows - self.photos + self.missing} | {self.missing} "
                f"| {self.images_count} | {'yes' if self.cover_exact else 'NO'} | {self.admin_calls}/{self.admin_budget} "
                f"| {self.converged_after:.1f} s | {self.count_lag:.1f} s |")


def _album_state(album_id: str, uploaded: set[str]) -> tuple[int, int, dict[str, str], int, int, bool]:
    """From the database: rows, ready, failed (public_id -> reason), uploaded photos missing,
    images_count, cover exact."""
    with db.session_scope() as session:
        live = (Image.album_id == album_id) & Image.deleted_at.is_(None)
        rows = session.scalar(select(func.count()).select_from(Image).where(Image.album_id == album_id)) or 0
        images = session.scalars(select(Image).where(live)).all()
        missing = len(uploaded - {i.public_id for i in images})
        ready = sum(1 for i in images if i.status == "ready")
        failed = {i.public_id: i.error or "" for i in images if i.status == "failed"}
        expected_cover = [i.public_id for i in session.scalars(
            select(Image).where(live, Image.metadata_status == "done", Image.thumbnails_status == "done")
            .order_by(Image.created_at.desc(), Image.id.desc()).limit(COVER_SIZE)).all()]
        album = session.get(Album, album_id)
        cover = [t["public_id"] for t in (album.thumbnails or [])]
        return rows, ready, failed, missing, album.images_count, cover == expected_cover


def converge(burst: Burst, timeout: float) -> Outcome:
    """Wait until every uploaded photo is ready (or failed) and the count and cover are exact."""
    stack, album, n = burst.stack, burst.album, len(burst.files)
    uploaded = {u["public_id"] for u in burst.uploaded}
    all_settled: float | None = None
    deadline = time.monotonic() + timeout
    while True:
        rows, ready, failed, missing, count, cover_ok = _album_state(album, uploaded)
        now = time.monotonic()
        if not missing and ready + len(failed) >= n and all_settled is None:
            all_settled = now
        if all_settled is not None and count == rows and cover_ok:
            break
        if now > deadline:
            break
        time.sleep(0.25)
    stats = stack.emulator.stats()
    faults = stack.emulator.get_faults()
    finished = time.monotonic()
    return Outcome(
        scenario="", album=album, photos=n, ready=ready, failed=failed, rows=rows, missing=missing, images_count=count,
        cover_exact=cover_ok,
        admin_calls=stats["admin_calls"], admin_budget=int(faults["admin_budget"]),
        rate_limited=stats["rate_limited"], calls_given_up=stats["hung_given_up"],
        converged_after=finished - burst.cleared,
        count_lag=finished - all_settled if all_settled is not None else float("inf"),
    )


# -- the faults -------------------------------------------------------------------------------

def kill_fast_worker(restart_after: float) -> Callable[[Burst], None]:
    def fault(burst: Burst) -> None:
        burst.stack.kill_fast()
        time.sleep(restart_after)
        burst.stack.start_fast()
    return fault


def restart_redis_empty(down_for: float) -> Callable[[Burst], None]:
    def fault(burst: Burst) -> None:
        burst.stack.redis.restart_empty(down_for=down_for)
    return fault


def redis_down_while_uploads(uploads_while_down: int, at_most: float = 30.0) -> Callable[[Burst], None]:
    """Redis dies; webhooks keep coming (and get 503s) for ``uploads_while_down`` more uploads;
    then it comes back empty."""
    def fault(burst: Burst) -> None:
        burst.stack.redis.kill()
        target = burst._done + uploads_while_down
        deadline = time.monotonic() + at_most
        while burst._done < target and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2)  # the emulator's retries of the last notifications run out meanwhile
        burst.stack.redis.start()
    return fault


def several_at_once(restart_after: float, down_for: float) -> Callable[[Burst], None]:
    """A Redis restart and a fast-worker SIGKILL together (on top of a failing Cloudinary)."""
    def fault(burst: Burst) -> None:
        burst.stack.kill_fast()
        burst.stack.redis.restart_empty(down_for=down_for)
        time.sleep(max(0.0, restart_after - down_for))
        burst.stack.start_fast()
    return fault


def _emulator_fault_for(burst: Burst, name: str, seconds: float) -> None:
    """The emulator's fault ``name`` fully on for ``seconds``, then off."""
    burst.stack.emulator.set_faults(**{name: 1.0})
    try:
        time.sleep(seconds)
    finally:
        burst.stack.emulator.set_faults(**{name: 0.0})


def explicit_outage(seconds: float) -> Callable[[Burst], None]:
    """Every ``explicit`` call (thumbnails, analysis) answers 500 for ``seconds`` while uploads
    go on, then Cloudinary works again."""
    return lambda burst: _emulator_fault_for(burst, "explicit_error_rate", seconds)


def cloudinary_hangs(call_timeouts: float) -> Callable[[Burst], None]:
    """The workers' link to Cloudinary cut for ``call_timeouts`` times their call timeout: every
    ``explicit``, ``destroy`` and Admin API call gets no answer at all (each io thread waits out
    the timeout), while clients' uploads go on and Cloudinary's webhooks still arrive; then the
    link is back and the calls still hung go through."""
    return lambda burst: _emulator_fault_for(burst, "hang_calls", call_timeouts * burst.stack.call_timeout)


@dataclass(frozen=True)
class Scenario:
    name: str
    emulator_faults: dict[str, float] = field(default_factory=dict)
    fault: Callable[[Burst], None] | None = None
    #: Fired after this share of the uploads (the trial fired after 70 of 200).
    fire_at: float = 0.35
    #: A tighter bound on converging after the fault cleared than the suite's, in heal runs
    #: (``HEAL_INTERVAL``): for faults whose end the product notices itself.
    converge_within_heals: int | None = None
    #: The fault holds the workers' calls past their timeout: some must have given up.
    calls_time_out: bool = False


SCENARIOS = [
    Scenario("no fault"),
    Scenario("each webhook delivered 3x", {"duplicate_notifications": 1.0, "duplicate_copies": 3}),
    Scenario("30% webhooks dropped", {"drop_notifications": 0.3}),
    Scenario("fast worker SIGKILLed (children, then parent), restarted 5 s later", fault=kill_fast_worker(5)),
    Scenario("Redis restarted empty mid-burst", fault=restart_redis_empty(1)),
    Scenario("Redis down while webhooks arrive", fault=redis_down_while_uploads(10)),
    Scenario("30% Cloudinary 500s, Admin budget 20/h, 30% webhooks dropped",
             {"error_rate": 0.3, "admin_budget": 20, "drop_notifications": 0.3}),
    Scenario("Redis restart + worker SIGKILL + 30% Cloudinary 500s at once", {"error_rate": 0.3},
             fault=several_at_once(5, 1)),
    # Every thumbnail of the burst fails for 75 s: the first ones fail for the eighth time
    # (2 + 3 + 4.5 ... s of pauses, less jitter) 62-70 s in, and would wait 25-34 s more.
    Scenario("Cloudinary's explicit failing every call for 75 s", fault=explicit_outage(75),
             converge_within_heals=6),
    # The calls time out (CLOUDINARY_CALL_TIMEOUT: 5 s in the suite, 30 s on default timers)
    # four times over: 20 s in the suite, 120 s in bench/chaos.py.
    # Its end is noticed as the calls still hung are answered: a tighter bound, as above.
    Scenario("Cloudinary hangs (no answer) for 4 call timeouts", fault=cloudinary_hangs(4),
             converge_within_heals=6, calls_time_out=True),
]


def run(stack: ChaosStack, scenario: Scenario, photos: int, workdir: Path, timeout: float) -> Outcome:
    stack.emulator.reset()
    stack.emulator.set_faults(**{**NO_FAULTS, **scenario.emulator_faults})
    album = stack.new_album()
    files = []
    base = random.randrange(1 << 30)
    for i in range(photos):
        path = workdir / f"{album}-{i}.jpg"
        path.write_bytes(tiny_jpeg(base + i))
        files.append(path)
    burst = Burst(stack, album, files, scenario.fault, max(1, int(photos * scenario.fire_at)))
    burst.run()
    outcome = converge(burst, timeout)
    outcome.scenario = scenario.name
    # Leave the stack healthy for the next scenario.
    stack.emulator.set_faults(**NO_FAULTS)
    if stack.fast is None:
        stack.start_fast()
    return outcome
