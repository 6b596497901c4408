"""``flask albums reconcile|reprocess --wait`` as an operator runs them: a separate process on
the stack's database and broker, following the real worker to the end of the processing."""
from __future__ import annotations

import subprocess
import sys

import cloudinary.uploader

from tests.conftest import FIXTURES
from tests.e2e.conftest import Stack
from tests.e2e.stack import ROOT

PHOTOS = sorted(FIXTURES.glob("*.jpg"))[:3]


def flask(stack: Stack, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**stack.env, "FLASK_SKIP_DOTENV": "1"}  # exactly the stack's settings, whatever .env holds
    return subprocess.run([sys.executable, "-m", "flask", "--app", "web", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_reconcile_wait_brings_in_photos_no_webhook_announced(stack: Stack, album: str) -> None:
    stack.emulator.set_faults(drop_notifications=1.0)
    form = stack.album(album)["upload_form"]  # a form without upload_done's own reconcile
    uploads = [stack.upload(form, photo) for photo in PHOTOS]
    assert stack.images(album) == []

    result = flask(stack, "albums", "reconcile", album, "--wait", "--timeout", "90")

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(PHOTOS)} ready, 0 failed" in result.stdout
    assert "processed" in result.stdout  # the progress bar's label
    images = stack.images(album)  # done means done: nothing left to wait for after the CLI returned
    assert sorted(i["public_id"] for i in images) == sorted(u["public_id"] for u in uploads)
    assert {i["status"] for i in images} == {"ready"}


def test_reprocess_wait_exits_non_zero_and_names_each_failed_photo(stack: Stack, album: str) -> None:
    form = stack.upload_done(album)["upload_form"]
    uploads = [stack.upload(form, photo) for photo in PHOTOS[:2]]
    stack.wait_all_ready(album, 2)
    gone = uploads[0]["public_id"]
    cloudinary.uploader.destroy(gone, type="authenticated")  # Cloudinary lost it: its stages fail

    result = flask(stack, "albums", "reprocess", album, "--all", "--wait", "--timeout", "90")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 images, 4 tasks enqueued" in result.stdout
    assert "1 ready, 1 failed" in result.stdout
    images = {i["public_id"]: i for i in stack.images(album)}
    assert {name: i["status"] for name, i in images.items()} == {gone: "failed", uploads[1]["public_id"]: "ready"}
    assert images[gone]["error"] and f"failed: {gone}: {images[gone]['error']}" in result.stderr
