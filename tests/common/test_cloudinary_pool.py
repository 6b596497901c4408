"""The SDK's HTTP connections (common/cloudinary_client.size_http_pool), counted against the
emulator over real HTTP: the io worker's threads share one keep-alive pool for the Upload and
Admin APIs, and no connection is thrown away and opened again."""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Iterator

import cloudinary
import cloudinary.api
import cloudinary.api_client.call_api
import cloudinary.uploader
import pytest

from cloudinary_emulator.testing import EmulatorProcess
from common import cloudinary_client
from tests.conftest import FIXTURES

THREADS = 8
CALLS_PER_THREAD = 10
OPENED = "Starting new HTTP connection"
DISCARDED = "Connection pool is full"


@pytest.fixture(scope="module")
def public_id(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    saved = (cloudinary.uploader._http, cloudinary.api_client.call_api._http)
    with EmulatorProcess(tmp_path_factory.mktemp("pool") / "data", admin_budget=10_000) as emulator:
        cloudinary.reset_config()
        cloudinary.config(**emulator.cloudinary_config())
        photo = Path(FIXTURES / "astronaut-small.jpg")
        yield cloudinary.uploader.upload(str(photo), type="authenticated")["public_id"]
    cloudinary.uploader._http, cloudinary.api_client.call_api._http = saved
    cloudinary.reset_config()


def burst(public_id: str, threads: int, caplog: pytest.LogCaptureFixture) -> tuple[int, int]:
    """Rounds of calls, one per thread at once (as a batch of tasks reaches the io worker),
    alternating Admin and Upload API calls; returns the connections urllib3 opened and
    discarded meanwhile."""
    caplog.clear()
    together = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for n in range(CALLS_PER_THREAD):
                together.wait()
                if n % 2:
                    cloudinary.api.resource(public_id, type="authenticated")
                else:
                    cloudinary.uploader.explicit(public_id, type="authenticated")
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)
            together.abort()  # and the other threads stop waiting for this one

    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        workers = [threading.Thread(target=work) for _ in range(threads)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
    assert errors == []
    messages = [record.getMessage() for record in caplog.records]
    return sum(OPENED in m for m in messages), sum(DISCARDED in m for m in messages)


def test_a_pool_sized_to_the_threads_opens_one_connection_per_thread_and_discards_none(public_id, caplog):
    calls = THREADS * CALLS_PER_THREAD
    cloudinary_client.size_http_pool(1)  # the SDK's own size
    small_opened, small_discarded = burst(public_id, THREADS, caplog)
    cloudinary_client.size_http_pool(THREADS)
    opened, discarded = burst(public_id, THREADS, caplog)
    print(f"\n{calls} calls from {THREADS} threads: pool of 1 opened {small_opened} connections, discarded "
          f"{small_discarded}; pool of {THREADS} opened {opened}, discarded {discarded}")
    assert small_discarded > 0 and small_opened > THREADS  # the symptom, reproduced
    assert discarded == 0
    assert opened <= THREADS  # both APIs, one shared pool: at most one connection per thread


def test_sequential_calls_reuse_one_connection(public_id, caplog):
    cloudinary_client.size_http_pool(THREADS)
    opened, discarded = burst(public_id, 1, caplog)
    assert (opened, discarded) == (1, 0)
