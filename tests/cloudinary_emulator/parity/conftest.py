"""The parity suite: behaviour tests written once, run against the emulator and, when
``CLOUDINARY_PARITY_URL=cloudinary://KEY:SECRET@CLOUD`` is set, against that real account too.

Each test gets a ``cloud`` (the SDK already configured for the target) and names everything it
makes under a fresh prefix/tag, deleting it afterwards, so a real account is left as it was.
Only SDK calls and delivery URLs are used: nothing here knows it talks to the emulator.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from typing import Iterator

import cloudinary
import cloudinary.api
import pytest

from cloudinary_emulator.testing import EmulatorProcess

PARITY_URL = os.environ.get("CLOUDINARY_PARITY_URL", "")


@dataclass
class Cloud:
    """The target of one test: its name, and the unique prefix/tag everything made is under."""

    name: str
    run: str = field(default_factory=lambda: "parity" + secrets.token_hex(4))
    made: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def is_emulator(self) -> bool:
        return self.name == "emulator"

    def pid(self, name: str) -> str:
        return f"{self.run}/{name}"

    def made_asset(self, public_id: str, type_: str = "upload", resource_type: str = "image") -> str:
        self.made.append((resource_type, type_, public_id))
        return public_id

    def cleanup(self) -> None:
        for resource_type, type_, public_id in self.made:
            try:
                cloudinary.api.delete_resources([public_id], type=type_, resource_type=resource_type)
            except Exception:  # noqa: BLE001 - best effort on a real account
                pass


@pytest.fixture(params=["emulator", "cloudinary"])
def cloud(request: pytest.FixtureRequest, emulator_session: EmulatorProcess,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    cloudinary.reset_config()
    if request.param == "emulator":
        emulator_session.reset(faults=True)
        cloudinary.config(**emulator_session.cloudinary_config())
    else:
        if not PARITY_URL:
            pytest.skip("CLOUDINARY_PARITY_URL not set: parity against a real account skipped")
        monkeypatch.setenv("CLOUDINARY_URL", PARITY_URL)
        cloudinary.reset_config()  # the SDK reads CLOUDINARY_URL itself
        cloudinary.config(secure=True)
    target = Cloud(request.param)
    yield target
    target.cleanup()
    cloudinary.reset_config()
