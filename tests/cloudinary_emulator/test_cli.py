"""Start-up configuration: CLOUDINARY_URL, flags, environment, the printed client URL."""
from __future__ import annotations

import pytest

from cloudinary_emulator.__main__ import build_parser, client_url, settings_from_args


def settings_for(argv: list[str]):  # noqa: ANN201 - a Settings
    return settings_from_args(build_parser().parse_args(argv))


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLOUDINARY_URL", raising=False)
    settings = settings_for([])
    assert (settings.cloud_name, settings.api_key, settings.api_secret) == (
        "demo", "123123123123", "emulator-secret")
    assert settings.faults.admin_budget == 500 and settings.max_file_size == 20 * 1024 * 1024
    assert client_url(settings, 9443) == (
        "cloudinary://123123123123:emulator-secret@demo?upload_prefix=http://127.0.0.1:9443"
        "&cname=127.0.0.1:9443&secure=false")


def test_cloudinary_url_then_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDINARY_URL", "cloudinary://k1:s1@cloud1")
    monkeypatch.setenv("CLOUDINARY_EMULATOR_ERROR_RATE", "0.5")
    settings = settings_for(["--api-secret", "s2", "--latency-ms", "20", "--host", "0.0.0.0"])
    assert (settings.cloud_name, settings.api_key, settings.api_secret) == ("cloud1", "k1", "s2")
    assert settings.faults.latency_ms == 20 and settings.faults.error_rate == 0.5
    assert "@cloud1?upload_prefix=http://127.0.0.1:80&" in client_url(settings, 80)


def test_the_printed_url_masks_the_secret_unless_asked(tmp_path) -> None:
    """stdout ends in honcho's log under ``make run``: no api secret there; a parent reading the
    pipe (``cloudinary_emulator.testing``) asks for it with ``--print-secret``."""
    import os
    import subprocess
    import sys

    from cloudinary_emulator.__main__ import SECRET_MASK

    env = {**os.environ, "CLOUDINARY_URL": "cloudinary://k1:s3cr3t-value@cloud1", "PYTHONUNBUFFERED": "1"}
    for extra, shown in (([], SECRET_MASK), (["--print-secret"], "s3cr3t-value")):
        proc = subprocess.Popen([sys.executable, "-m", "cloudinary_emulator", "--port", "0", "--data-dir", str(tmp_path), *extra],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            line = proc.stdout.readline().strip()  # type: ignore[union-attr]
        finally:
            proc.kill()
            _, err = proc.communicate(timeout=10)
        assert line.startswith(f"CLOUDINARY_URL=cloudinary://k1:{shown}@cloud1?upload_prefix=http://127.0.0.1:"), line
        if not extra:
            assert "s3cr3t-value" not in line + err
