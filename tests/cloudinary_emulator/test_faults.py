"""Fault injection through /_emulator/faults, seen through the SDK."""
from __future__ import annotations

import time
from pathlib import Path

import cloudinary
import cloudinary.api
import cloudinary.uploader
import pytest
import requests
from cloudinary.exceptions import GeneralError

from cloudinary_emulator.testing import EmulatorProcess, NotificationReceiver


DEFAULTS = {"latency_ms": 0.0, "error_rate": 0.0, "explicit_error_rate": 0.0, "admin_budget": 500,
            "admin_window_seconds": 3600.0, "drop_notifications": 0.0,
            "duplicate_notifications": 0.0, "duplicate_copies": 2, "hang_calls": 0.0}


def test_faults_round_trip(emu: EmulatorProcess) -> None:
    assert emu.get_faults() == DEFAULTS
    after = emu.set_faults(latency_ms=5, error_rate=0.25)
    assert after == {**DEFAULTS, "latency_ms": 5.0, "error_rate": 0.25}
    for bad in ({"nope": 1}, {"error_rate": 2}, {"admin_budget": -1}, {"latency_ms": "x"}):
        response = requests.post(emu.base_url + "/_emulator/faults", json=bad, timeout=10)
        assert response.status_code == 400 and "message" in response.json()["error"]
    assert emu.reset()["faults"]["error_rate"] == 0.25  # reset keeps faults ...
    assert emu.reset(faults=True)["faults"] == DEFAULTS  # ... unless asked


def test_latency(emu: EmulatorProcess, photos: Path) -> None:
    cloudinary.uploader.upload(str(photos / "astronaut-small.jpg"), public_id="l1")
    emu.set_faults(latency_ms=300)
    started = time.monotonic()
    cloudinary.api.resource("l1")
    assert time.monotonic() - started >= 0.3


def test_error_rate_one_is_general_error(emu: EmulatorProcess, photos: Path) -> None:
    emu.set_faults(error_rate=1.0)
    with pytest.raises(GeneralError, match="General Error"):
        cloudinary.uploader.upload(str(photos / "astronaut-small.jpg"))
    with pytest.raises(GeneralError, match="General Error"):
        cloudinary.api.resources_by_tag("x")
    stats = emu.stats()
    assert stats["uploads"] == 0 and stats["errors_injected"] == 2


def test_explicit_error_rate_fails_explicit_only(emu: EmulatorProcess, photos: Path) -> None:
    emu.set_faults(explicit_error_rate=1.0)
    uploaded = cloudinary.uploader.upload(str(photos / "astronaut-small.jpg"))
    with pytest.raises(GeneralError, match="General Error"):
        cloudinary.uploader.explicit(uploaded["public_id"], type="upload", eager=[{"width": 10}])
    assert cloudinary.api.resource(uploaded["public_id"])["public_id"] == uploaded["public_id"]
    stats = emu.stats()
    assert stats["uploads"] == 1 and stats["errors_injected"] == 1


def test_dropped_notifications_are_counted(emu: EmulatorProcess, photos: Path,
                                           receiver: NotificationReceiver) -> None:
    emu.set_faults(drop_notifications=1.0)
    cloudinary.uploader.upload(str(photos / "astronaut-small.jpg"), notification_url=receiver.url)
    assert emu.stats()["notifications"]["dropped"] == 1
    time.sleep(0.2)
    assert receiver.received == []


def test_duplicated_notifications_are_counted(emu: EmulatorProcess, photos: Path,
                                              receiver: NotificationReceiver) -> None:
    emu.set_faults(duplicate_notifications=1.0, duplicate_copies=3)
    result = cloudinary.uploader.upload(str(photos / "astronaut-small.jpg"),
                                        notification_url=receiver.url)
    deliveries = receiver.wait_for(3)
    assert len(deliveries) == 3
    assert {b for _, b in deliveries} == {deliveries[0][1]}  # the same notification each time
    assert result["public_id"] in deliveries[0][1]
    stats = emu.wait_for_stats(lambda s: s["notifications"]["sent"] >= 3)["notifications"]
    assert (stats["sent"], stats["duplicated"]) == (3, 1)


def test_stats_shape(emu: EmulatorProcess) -> None:
    stats = emu.stats()
    assert set(stats["calls"]) == {"upload", "explicit", "destroy", "tags", "rename",
                                   "admin_resource", "admin_resources", "admin_resources_by_tag",
                                   "admin_delete_resources", "admin_upload_presets", "delivery"}
    assert set(stats["notifications"]) == {"sent", "failed", "dropped", "duplicated"}
    for key in ("admin_calls", "uploads", "rate_limited", "hung", "hung_given_up"):
        assert stats[key] == 0


def test_hang_calls_holds_backend_calls_while_uploads_go_on(emu: EmulatorProcess, photos: Path) -> None:
    """The workers' link cut: explicit, destroy and Admin calls get no answer at all, while
    uploads and control calls go on. 40 calls whose clients give up (their timeout) are dropped
    and free their threads, so 42 more hang beside them (82 > the server's 64 threads); set back
    to 0, every call still waiting goes through and is answered."""
    from concurrent.futures import ThreadPoolExecutor, wait

    uploaded = [cloudinary.uploader.upload(str(photos / "astronaut-small.jpg"), public_id=f"h{i}")["public_id"]
                for i in range(2)]
    emu.set_faults(hang_calls=1.0)
    pool = ThreadPoolExecutor(82)
    try:
        given_up = [pool.submit(cloudinary.uploader.explicit, uploaded[0], type="upload", eager=[{"width": 10}],
                                timeout=1.5) for _ in range(40)]
        wait(given_up, timeout=30)
        for call in given_up:
            with pytest.raises(Exception, match="(?i)timed? ?out"):
                call.result()
        calls = [pool.submit(cloudinary.uploader.explicit, uploaded[0], type="upload", eager=[{"width": 10}], timeout=60)
                 for _ in range(40)]
        calls.append(pool.submit(cloudinary.api.resource, uploaded[0], timeout=60))
        calls.append(pool.submit(cloudinary.uploader.destroy, uploaded[1], timeout=60))
        emu.wait_for_stats(lambda s: s["hung"] >= 82, timeout=20)
        started = time.monotonic()
        assert cloudinary.uploader.upload(str(photos / "astronaut-small.jpg"), public_id="h2")["public_id"] == "h2"
        assert time.monotonic() - started < 5
        assert requests.get(emu.base_url + "/_emulator/health", timeout=5).json()["status"] == "ok"
        stats = emu.stats()  # not counted (nor charged) until they go through
        assert (stats["calls"]["explicit"], stats["calls"]["destroy"], stats["admin_calls"]) == (0, 0, 0)
        time.sleep(1)
        assert not any(c.done() for c in calls)
        emu.set_faults(hang_calls=0)
        results = [c.result(timeout=20) for c in calls]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    assert all(r["public_id"] == uploaded[0] for r in results[:41])
    assert results[41]["result"] == "ok"
    # The calls given up never reached Cloudinary.
    emu.wait_for_stats(lambda s: (s["calls"]["explicit"], s["calls"]["destroy"], s["admin_calls"], s["hung"],
                                  s["hung_given_up"]) == (40, 1, 1, 82, 40))
