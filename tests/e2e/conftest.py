"""End-to-end fixtures: the real chain (tests/e2e/stack.py) with the suite's environment."""
from __future__ import annotations

from typing import Iterator

import pytest

from tests.conftest import TEST_JWT_SECRET
from tests.e2e.stack import Stack, free_port, wait_for

__all__ = ["Stack", "free_port", "wait_for"]


# Package scope: the workers stop when tests/e2e is done, so they never pick up what the
# in-process tests elsewhere publish.
@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("stack"), TEST_JWT_SECRET)
    try:
        running.start()
        yield running
    finally:
        running.stop()
    # After the whole e2e suite: no token it used was written to any log (gunicorn's access log
    # is on, as in production). A failure here is reported as an error at teardown.
    leaked = running.logged_credentials()
    assert leaked == [], f"{len(leaked)} of {len(running.credentials)} credentials found in the logs: {leaked}"
    # The workers' Cloudinary connections were kept alive, not discarded (common/cloudinary_client.py).
    assert running.worker_log_lines("Connection pool is full") == 0


@pytest.fixture
def album(stack: Stack) -> str:
    stack.emulator.set_faults(latency_ms=0, error_rate=0, drop_notifications=0, duplicate_notifications=0,
                              admin_budget=500, admin_window_seconds=3600)
    return stack.new_album()
