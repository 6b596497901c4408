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
            "duplicate_notifications": 0.0, "duplicate_copies": 2}


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
    for key in ("admin_calls", "uploads", "rate_limited"):
        assert stats[key] == 0
