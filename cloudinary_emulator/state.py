"""What every request shares: storage, faults, budget, counters and background pools."""
from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor

from flask import current_app, request

from cloudinary_emulator.chunks import ChunkAssembler
from cloudinary_emulator.errors import CloudinaryError
from cloudinary_emulator.faults import AdminBudget, FaultState
from cloudinary_emulator.notifications import Notifier
from cloudinary_emulator.render_memo import RenderMemo
from cloudinary_emulator.settings import Settings
from cloudinary_emulator.stats import Stats
from cloudinary_emulator.storage import Storage

EXTENSION_KEY = "cloudinary_emulator"


class EmulatorState:
    """Everything shared by requests: storage, faults, budget, counters and background pools."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.storage = Storage(settings.data_dir)
        self.faults = FaultState(settings.faults)
        self.budget = AdminBudget()
        self.stats = Stats()
        self.notifier = Notifier(
            secret=settings.api_secret, algorithm=settings.notification_algorithm,
            faults=self.faults, stats=self.stats, retries=settings.notification_retries,
            retry_delay=settings.notification_retry_delay,
            timeout=settings.notification_timeout, workers=settings.notification_workers)
        # eager_async renders run here, off the request thread.
        self.jobs = ThreadPoolExecutor(max_workers=4, thread_name_prefix="eager")
        self.renders = RenderMemo()  # renders shared by assets with the same bytes
        self.chunks = ChunkAssembler(self.storage.tmp, settings.max_file_size)
        self.cursor_key = hashlib.sha256(b"cursor" + settings.api_secret.encode()).digest()

    def shutdown(self) -> None:
        self.faults.close()
        self.jobs.shutdown(wait=False, cancel_futures=True)
        self.notifier.shutdown()
        self.storage.close()


def state() -> EmulatorState:
    return current_app.extensions[EXTENSION_KEY]


def public_host() -> str:
    """``host:port`` for delivery URLs: configured, or whatever the client reached us at."""
    return state().settings.public_host or request.host


def check_cloud(cloud: str) -> None:
    if cloud != state().settings.cloud_name:
        raise CloudinaryError(401, f"Invalid cloud_name {cloud}")


def wait_out_cut_link() -> None:
    """A call from a backend (see ``Faults.hang_calls``): no answer while the link is cut. Called
    before the call is counted or charged: it reaches Cloudinary only when the link is back. A
    call whose client gave up meanwhile (its timeout) is dropped unanswered, so that hung calls
    never hold more request threads than there are clients waiting (waitress tells through
    ``channel_request_lookahead``, see ``__main__``)."""
    st = state()
    gone = request.environ.get("waitress.client_disconnected")
    if st.faults.hang(on_hang=st.stats.hung, client_gone=gone) == "gone":
        st.stats.hung(given_up=True)
        raise CloudinaryError(499, "Client closed the connection")


def inject_api_faults(action: str = "") -> None:
    """Latency, then the random General Error, for Upload and Admin API calls (``action``: the
    Upload API's, for the faults of one action)."""
    st = state()
    faults = st.faults.get()
    if faults.latency_ms > 0:
        time.sleep(faults.latency_ms / 1000.0)
    if st.faults.chance(faults.error_rate) or (action == "explicit" and st.faults.chance(faults.explicit_error_rate)):
        st.stats.error_injected()
        raise CloudinaryError(500, "General Error")
