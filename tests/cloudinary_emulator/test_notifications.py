"""Webhook notifications: signature the SDK verifies, retries, eager notifications."""
from __future__ import annotations

import json
from pathlib import Path

import cloudinary
import cloudinary.uploader
import cloudinary.utils

from cloudinary_emulator.testing import EmulatorProcess, NotificationReceiver
from tests.cloudinary_emulator.conftest import detected_faces


def test_upload_notification_is_signed(emu: EmulatorProcess, photos: Path, receiver: NotificationReceiver) -> None:
    result = cloudinary.uploader.upload(str(photos / "astronaut.jpg"), public_id="n1",
                                        notification_url=receiver.url, faces=True)
    [(headers, body)] = receiver.wait_for(1)
    assert headers["Content-Type"] == "application/json"
    assert cloudinary.utils.verify_notification_signature(
        body, headers["X-Cld-Timestamp"], headers["X-Cld-Signature"])
    assert not cloudinary.utils.verify_notification_signature(
        body + " ", headers["X-Cld-Timestamp"], headers["X-Cld-Signature"])
    payload = json.loads(body)
    assert payload["notification_type"] == "upload"
    assert payload["public_id"] == "n1" and payload["asset_id"] == result["asset_id"]
    assert payload["faces"] == detected_faces("astronaut.jpg")
    assert payload["timestamp"].endswith("Z") and payload["request_id"]
    assert emu.wait_for_stats(lambda s: s["notifications"]["sent"] >= 1)["notifications"]["sent"] == 1


def test_non_200_is_retried(emu: EmulatorProcess, photos: Path, receiver: NotificationReceiver) -> None:
    receiver.statuses = [500, 503]
    cloudinary.uploader.upload(str(photos / "coffee.jpg"), notification_url=receiver.url)
    assert len(receiver.wait_for(1)) == 1
    stats = emu.wait_for_stats(lambda s: s["notifications"]["sent"] >= 1)["notifications"]
    assert (stats["sent"], stats["failed"]) == (1, 0)


def test_gives_up_after_retries(emu: EmulatorProcess, photos: Path, receiver: NotificationReceiver) -> None:
    receiver.statuses = [500] * 10
    cloudinary.uploader.upload(str(photos / "coffee.jpg"), notification_url=receiver.url)
    # 3 retries at 0.05, 0.1 and 0.2 s (the session emulator's --notification-retry-delay).
    stats = emu.wait_for_stats(lambda s: s["notifications"]["failed"] >= 1)["notifications"]
    assert (stats["sent"], stats["failed"]) == (0, 1)
    assert receiver.attempts == 4  # 1 try + 3 retries


def test_unreachable_receiver_counts_as_failed(emu: EmulatorProcess, photos: Path) -> None:
    cloudinary.uploader.upload(str(photos / "coffee.jpg"), notification_url="http://127.0.0.1:9/x")
    assert emu.wait_for_stats(lambda s: s["notifications"]["failed"] >= 1)["notifications"]["failed"] == 1


def test_eager_async_notification(emu: EmulatorProcess, photos: Path, receiver: NotificationReceiver) -> None:
    cloudinary.uploader.upload(str(photos / "astronaut.jpg"), public_id="ea", type="authenticated")
    answer = cloudinary.uploader.explicit(
        "ea", type="authenticated", eager=[{"crop": "thumb", "gravity": "faces", "width": 64,
                                            "height": 64}],
        eager_async=True, eager_notification_url=receiver.url)
    assert answer["eager"][0]["status"] == "processing"
    [(headers, body)] = receiver.wait_for(1)
    assert cloudinary.utils.verify_notification_signature(
        body, headers["X-Cld-Timestamp"], headers["X-Cld-Signature"])
    payload = json.loads(body)
    assert payload["notification_type"] == "eager"
    assert payload["public_id"] == "ea"
    assert payload["batch_id"] == answer["eager"][0]["batch_id"]
    [entry] = payload["eager"]
    assert (entry["width"], entry["height"]) == (64, 64)
    assert entry["url"] == answer["eager"][0]["url"]
    assert emu.wait_for_stats(lambda s: s["notifications"]["sent"] >= 1)["notifications"]["sent"] == 1


def test_only_200_counts_as_delivered(emu: EmulatorProcess, photos: Path, receiver: NotificationReceiver) -> None:
    """Cloudinary retries until it gets a 200: a 201 or a 204 is retried too (and so here)."""
    receiver.statuses = [201, 204]
    cloudinary.uploader.upload(str(photos / "coffee.jpg"), notification_url=receiver.url)
    assert len(receiver.wait_for(1)) == 1
    stats = emu.wait_for_stats(lambda s: s["notifications"]["sent"] >= 1)["notifications"]
    assert (stats["sent"], stats["failed"]) == (1, 0)
    assert receiver.attempts == 3  # 201, 204, then the 200 that counts
