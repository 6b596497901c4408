"""Fixtures: one emulator subprocess per session, the SDK pointed at it, a webhook receiver."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import cloudinary
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    # Needed until the project is installed (pip install -e .) or pytest sets pythonpath.
    sys.path.insert(0, str(REPO_ROOT))

from cloudinary_emulator.testing import EmulatorProcess, NotificationReceiver  # noqa: E402

PHOTOS = Path(__file__).resolve().parent.parent / "fixtures" / "photos"
# Small on purpose: the oversized-file test then needs only a modest body.
MAX_FILE_SIZE = 1_000_000


@pytest.fixture(scope="session")
def photos() -> Path:
    return PHOTOS


@pytest.fixture(scope="session")
def max_file_size() -> int:
    return MAX_FILE_SIZE


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


@pytest.fixture
def receiver() -> Iterator[NotificationReceiver]:
    with NotificationReceiver() as rec:
        yield rec


def detected_faces(name: str) -> list[list[int]]:
    """What the emulator's analysis finds on a fixture photo: the upload, notification and Admin
    API tests check that this is what they carry (tests/cloudinary_emulator/test_analysis.py
    checks the detector itself against the photo's labelled face)."""
    from cloudinary_emulator.analysis import analyse

    return analyse((PHOTOS / name).read_bytes()).faces
