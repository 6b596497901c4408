"""One quick retry of an Upload API call that failed fast and transiently
(common/cloudinary_client._upload_api_call), counted by the emulator over real HTTP: a sporadic
5xx costs the stage half a second, not a round of its backoff; a slow failure and an Admin API
call (which spends the hourly budget) are not tried again."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import cloudinary
import cloudinary.uploader
import pytest

from cloudinary_emulator.testing import EmulatorProcess
from common import cloudinary_client
from tests.conftest import FIXTURES


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmulatorProcess, str]]:
    with EmulatorProcess(tmp_path_factory.mktemp("retry") / "data", admin_budget=10_000) as running:
        cloudinary.reset_config()
        cloudinary.config(**running.cloudinary_config())
        photo = Path(FIXTURES / "astronaut-small.jpg")
        public_id = cloudinary.uploader.upload(str(photo), type="authenticated")["public_id"]
        yield running, public_id
    cloudinary.reset_config()


def _errors_after(emulator: EmulatorProcess, call) -> tuple[type[BaseException] | None, int]:
    before = emulator.stats()["errors_injected"]
    raised = None
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the test reports which
        raised = type(exc)
    return raised, emulator.stats()["errors_injected"] - before


def test_a_fast_transient_failure_is_tried_once_more_then_left_to_the_backoff(emulator):
    running, public_id = emulator
    running.set_faults(error_rate=1.0, latency_ms=0)
    try:
        raised, errors = _errors_after(running, lambda: cloudinary_client.generate_derived(public_id))
    finally:
        running.set_faults(error_rate=0.0)
    assert (raised, errors) == (cloudinary_client.TransientError, 2)


def test_a_call_that_failed_slowly_is_not_tried_again(emulator, monkeypatch):
    running, public_id = emulator
    monkeypatch.setattr(cloudinary_client, "UPLOAD_API_FAST_FAILURE", 0.05)
    running.set_faults(error_rate=1.0, latency_ms=200)
    try:
        raised, errors = _errors_after(running, lambda: cloudinary_client.fetch_analysis(public_id))
    finally:
        running.set_faults(error_rate=0.0, latency_ms=0)
    assert (raised, errors) == (cloudinary_client.TransientError, 1)


def test_an_admin_api_call_is_not_tried_again(emulator):
    running, _ = emulator
    running.set_faults(error_rate=1.0, latency_ms=0)
    try:
        raised, errors = _errors_after(running, lambda: cloudinary_client.list_by_tag("any", None, reserve=0))
    finally:
        running.set_faults(error_rate=0.0)
    assert (raised, errors) == (cloudinary_client.TransientError, 1)


def test_without_faults_a_call_is_made_once(emulator):
    running, public_id = emulator
    before = running.stats()["calls"].get("explicit", 0)
    thumb, _ = cloudinary_client.generate_derived(public_id)
    assert thumb.url and running.stats()["calls"]["explicit"] - before == 1
