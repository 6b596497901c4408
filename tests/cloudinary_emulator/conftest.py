"""Fixtures: one emulator subprocess per session, the SDK pointed at it, a webhook receiver."""
from __future__ import annotations

import http.server
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cloudinary
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    # Needed until the project is installed (pip install -e .) or pytest sets pythonpath.
    sys.path.insert(0, str(REPO_ROOT))

from cloudinary_emulator.testing import EmulatorProcess  # noqa: E402

PHOTOS = Path(__file__).resolve().parent.parent / "fixtures" / "photos"
# Small on purpose: the oversized-file test then needs only a modest body.
MAX_FILE_SIZE = 1_000_000


@pytest.fixture(scope="session")
def photos() -> Path:
    return PHOTOS


@pytest.fixture(scope="session")
def emulator_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    root = tmp_path_factory.mktemp("emulator")
    with EmulatorProcess(root / "data", extra_args=[
            "--notification-retry-delay", "0.05", "--max-file-size", str(MAX_FILE_SIZE)]) as emu:
        yield emu


@pytest.fixture
def emu(emulator_session: EmulatorProcess) -> Iterator[EmulatorProcess]:
    """The session emulator, emptied, faults cleared, with the SDK configured for it."""
    emulator_session.reset(faults=True)
    cloudinary.reset_config()
    cloudinary.config(**emulator_session.cloudinary_config())
    yield emulator_session
    cloudinary.reset_config()


@dataclass
class Receiver:
    """A webhook endpoint in a thread; answers ``statuses`` in turn, then 200."""

    url: str = ""
    received: list[tuple[dict[str, str], str]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[tuple[dict[str, str], str]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        with self.lock:
            return list(self.received)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8")
            with state.lock:
                status = state.statuses.pop(0) if state.statuses else 200
                if status == 200:
                    state.received.append((dict(self.headers.items()), body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_port}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
