"""Upload API through the official SDK: analysis, answer shape, signatures, overwrite."""
from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from unittest import mock

import cloudinary
import cloudinary.uploader
import cloudinary.utils
import pytest
from cloudinary.exceptions import AuthorizationRequired, BadRequest

from cloudinary_emulator.testing import EmulatorProcess
from tests.cloudinary_emulator.conftest import detected_faces

ANALYSIS_KEYS = {"faces", "colors", "predominant", "phash", "image_metadata"}


def test_upload_answers_cloudinary_shape(emu: EmulatorProcess, photos: Path) -> None:
    path = photos / "astronaut.jpg"
    result = cloudinary.uploader.upload(str(path), public_id="album/astronaut",
                                        type="authenticated", tags=["00100000123BB25", "x"])
    assert re.fullmatch(r"[0-9a-f]{32}", result["asset_id"])
    assert re.fullmatch(r"[0-9a-f]{32}", result["version_id"])
    assert result["public_id"] == "album/astronaut"
    assert isinstance(result["version"], int)
    assert cloudinary.utils.verify_api_response_signature(
        result["public_id"], result["version"], result["signature"])
    assert (result["width"], result["height"], result["format"]) == (512, 512, "jpg")
    assert result["bytes"] == path.stat().st_size
    assert result["etag"] == hashlib.md5(path.read_bytes()).hexdigest()
    assert result["resource_type"] == "image" and result["type"] == "authenticated"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", result["created_at"])
    assert result["tags"] == ["00100000123BB25", "x"]
    assert result["pages"] == 1 and result["placeholder"] is False
    assert result["original_filename"] == "astronaut"
    expected_url = cloudinary.utils.cloudinary_url(
        "album/astronaut", type="authenticated", sign_url=True, format="jpg",
        version=result["version"])[0]
    assert result["url"] == expected_url
    assert "/s--" in result["url"]
    # Nothing was asked for, so no analysis appears.
    assert not ANALYSIS_KEYS & result.keys()


def test_astronaut_has_one_face_and_the_known_phash(emu: EmulatorProcess, photos: Path) -> None:
    result = cloudinary.uploader.upload(str(photos / "astronaut.jpg"), faces=True, phash=True,
                                        colors=True)
    assert result["faces"] == detected_faces("astronaut.jpg")
    assert result["phash"] == "c2924c5532bddfc8"
    colors = result["colors"]
    assert 0 < len(colors) <= 32
    assert all(re.fullmatch(r"#[0-9A-F]{6}", c) for c, _ in colors)
    assert [p for _, p in colors] == sorted((p for _, p in colors), reverse=True)
    names = [name for name, _ in result["predominant"]["google"]]
    assert names and all(isinstance(n, str) for n in names)


def test_near_duplicate_has_the_same_phash(emu: EmulatorProcess, photos: Path) -> None:
    big = cloudinary.uploader.upload(str(photos / "astronaut.jpg"), phash=True, faces=True)
    small = cloudinary.uploader.upload(str(photos / "astronaut-small.jpg"), phash=True, faces=True)
    # The fixtures README: same 64-bit pHash, c2924c5532bddfc8.
    assert small["phash"] == big["phash"] == "c2924c5532bddfc8"
    assert len(small["faces"]) == 1


def test_exif_as_strings(emu: EmulatorProcess, photos: Path) -> None:
    result = cloudinary.uploader.upload(str(photos / "chelsea.jpg"), image_metadata=True,
                                        faces=True)
    assert result["image_metadata"]["Make"] == "Canon"
    assert result["image_metadata"]["Model"] == "EOS 5D"
    assert all(isinstance(v, str) for v in result["image_metadata"].values())
    assert result["faces"] == []
    coffee = cloudinary.uploader.upload(str(photos / "coffee.jpg"), media_metadata=True)
    assert coffee["image_metadata"] == {"JFIFVersion": "1.01", "Colorspace": "RGB"}  # no EXIF at all


def test_data_uri_upload(emu: EmulatorProcess, photos: Path) -> None:
    data = (photos / "rocket.jpg").read_bytes()
    uri = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    result = cloudinary.uploader.upload(uri, public_id="rocket")
    assert (result["width"], result["height"], result["bytes"]) == (640, 427, len(data))


def test_random_public_id(emu: EmulatorProcess, photos: Path) -> None:
    result = cloudinary.uploader.upload(str(photos / "coffee.jpg"))
    assert re.fullmatch(r"[a-z0-9]{20}", result["public_id"])
    assert result["url"].startswith(emu.base_url + "/demo/image/upload/v")


def test_overwrite_false_returns_existing(emu: EmulatorProcess, photos: Path) -> None:
    first = cloudinary.uploader.upload(str(photos / "coffee.jpg"), public_id="p")
    again = cloudinary.uploader.upload(str(photos / "rocket.jpg"), public_id="p", overwrite=False)
    assert again["existing"] is True
    assert (again["version"], again["width"]) == (first["version"], first["width"])
    replaced = cloudinary.uploader.upload(str(photos / "rocket.jpg"), public_id="p")
    assert replaced["version"] > first["version"]
    assert replaced["asset_id"] == first["asset_id"]
    assert replaced["width"] == 640


def test_signature_variants_accepted(emu: EmulatorProcess, photos: Path) -> None:
    # "&" in a value is where signature versions 1 and 2 differ.
    path = str(photos / "astronaut-small.jpg")
    for options in ({"signature_version": 1}, {"signature_version": 2},
                    {"signature_algorithm": "sha256"}):
        result = cloudinary.uploader.upload(path, tags=["a&b"], **options)
        assert result["tags"] == ["a&b"]


def test_wrong_secret_is_401(emu: EmulatorProcess, photos: Path) -> None:
    with pytest.raises(AuthorizationRequired, match=r"Invalid Signature [0-9a-f]+\. String to sign - '.*timestamp="):
        cloudinary.uploader.upload(str(photos / "astronaut-small.jpg"), api_secret="wrong")
    with pytest.raises(AuthorizationRequired, match="Unknown API key"):
        cloudinary.uploader.upload(str(photos / "astronaut-small.jpg"), api_key="999")


def test_stale_timestamp_refused_future_accepted(emu: EmulatorProcess, photos: Path) -> None:
    import time

    path = str(photos / "astronaut-small.jpg")
    old = int(time.time()) - 3700
    shown = time.strftime("%Y-%m-%d %H:%M:%S \\+0000", time.gmtime(old))
    with mock.patch("cloudinary.utils.now", return_value=str(old)):
        with pytest.raises(BadRequest, match=f"Stale request - reported time is {shown} which is more than 1 hour ago"):
            cloudinary.uploader.upload(path)
    with mock.patch("cloudinary.utils.now", return_value=str(int(time.time()) + 7200)):
        assert cloudinary.uploader.upload(path)["public_id"]


def test_destroy(emu: EmulatorProcess, photos: Path) -> None:
    cloudinary.uploader.upload(str(photos / "coffee.jpg"), public_id="gone", type="private")
    assert cloudinary.uploader.destroy("gone", type="private")["result"] == "ok"
    assert cloudinary.uploader.destroy("gone", type="private")["result"] == "not found"
    assert emu.stats()["calls"]["destroy"] == 2


def test_concurrent_uploads(emu: EmulatorProcess, photos: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    names = ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"] * 3
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(
            lambda i: cloudinary.uploader.upload(str(photos / names[i]), public_id=f"c/{i}",
                                                 tags="burst", faces=True), range(len(names))))
    assert sorted(r["public_id"] for r in results) == sorted(f"c/{i}" for i in range(len(names)))
    assert sum(len(r["faces"]) for r in results) == 3  # one per astronaut
    assert emu.stats()["uploads"] == len(names)


def test_colour_character_and_container_metadata(emu: EmulatorProcess, photos: Path) -> None:
    import io

    from PIL import Image, ImageDraw

    photo = cloudinary.uploader.upload(str(photos / "astronaut.jpg"), colors=True,
                                       image_metadata=True)
    assert (photo["grayscale"], photo["semi_transparent"]) == (False, False)
    assert photo["illustration_score"] < 0.5
    assert {k: photo["image_metadata"][k] for k in ("JFIFVersion", "Colorspace", "DPI")} == {
        "JFIFVersion": "1.01", "Colorspace": "RGB", "DPI": "72"}
    drawing = Image.new("RGBA", (200, 100), (255, 255, 255, 0))
    ImageDraw.Draw(drawing).rectangle((20, 20, 120, 80), fill=(0, 0, 0, 255))
    buffer = io.BytesIO()
    drawing.save(buffer, "PNG")
    flat = cloudinary.uploader.upload(buffer.getvalue(), colors=True)
    assert (flat["grayscale"], flat["semi_transparent"]) == (True, True)
    assert flat["illustration_score"] > 0.9
    assert "grayscale" not in cloudinary.uploader.upload(buffer.getvalue())  # only when asked
